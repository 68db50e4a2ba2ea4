"""Q-score matching (QSM; Psenka, Escontrela, Abbeel and Ma 2024), the whole agent in one file.

The discrete-time ancestor of CQSM. The policy is a DDPM of ``T = 5`` steps
(:mod:`cqsm.rl.agents.ddpm`); instead of cloning actions, its denoiser is trained so that the
direction a sampler step moves, ``-eps_theta``, matches the critic's action gradient taken at
the *noisy* action:

    L(theta) = E |eps_theta(x, u_t, t) + M_q grad_u Q(x, u_t)|^2,
    u_t = sqrt(abar_t) u + sqrt(1 - abar_t) eps,  u a replayed action, t uniform,

with ``grad_u Q`` the mean of the two critics' gradients in unit-box coordinates. So the
denoiser's score ``-eps_theta / sqrt(1 - abar_t)`` points up the Q gradient, and sampling climbs
Q. ``M_q`` is the method's main setting. The critics are TD3's twin critics with clipped double-Q,
next actions sampled from the current actor with ``N(0, target_noise)`` added; acting adds
``N(0, expl_noise)`` when training. Defaults follow the public reference code: ``M_q = 1``, a
denoiser of three 256-wide Mish layers with a 64-dimensional time embedding through two 128-wide
Mish layers, 256x256 critics, learning rates 3e-4 and a 10k-step random warm-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from cqsm.rl.agents.common import (
    ActionBox,
    Saved,
    TwinCritic,
    as_batch,
    bootstrapped,
    descend,
    fit_critic,
    obs_dim,
    soft_update,
    unwrapped,
    with_target,
)
from cqsm.rl.agents.ddpm import DDPM, Denoiser
from cqsm.settings import check_positive, check_widths

__all__ = ["QSMSettings", "QSMAgent"]


@dataclass
class QSMSettings:
    """Settings of QSM (noise scales in half-widths of the action box)."""

    M_q: float = 1.0
    """scale of the action gradient the denoiser matches: -eps_theta -> M_q grad_u Q"""
    gamma: float = 0.99
    """discount factor per env step"""
    T: int = 5
    """denoising steps of the DDPM actor"""
    hidden: tuple[int, ...] = (256, 256, 256)
    """hidden layer widths (Mish) of the denoiser"""
    critic_hidden: tuple[int, ...] = (256, 256)
    """hidden layer widths (ReLU) of the critics"""
    actor_lr: float = 3e-4
    """Adam learning rate of the denoiser"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    tau: float = 0.005
    """Polyak rate of the target critics"""
    expl_noise: float = 0.1
    """Gaussian exploration noise added to the sampled action when training"""
    target_noise: float = 0.1
    """Gaussian noise added to the TD target's next action"""

    def __post_init__(self):
        check_positive(self, "M_q", "gamma", "actor_lr", "critic_lr", "tau")
        check_positive(self, "T", integer=True)
        check_widths(self, "hidden", "critic_hidden")


class QSMAgent(Saved):
    """QSM acting directly in the env's action box."""

    Settings = QSMSettings
    PARTS = ("actor", "critic", "critic_target", "actor_opt", "critic_opt")
    POLICY_PARTS = ("actor",)
    TRAIN_DEFAULTS = {"learning_starts": 10_000}  # the reference code's warm-up

    wrap = staticmethod(unwrapped)

    def __init__(self, settings: QSMSettings, env: gym.Env):
        self.settings = s = settings
        self.box = ActionBox(env.action_space, "QSM")
        n, d = obs_dim(env), self.box.d
        self.ddpm = DDPM(s.T, d)
        self.actor = Denoiser(n, d, s.hidden, t_dim=64, t_hidden=(128,), t_out=128)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=s.actor_lr, fused=True)
        self.critic, self.critic_target, self.critic_opt = with_target(
            TwinCritic(n, d, s.critic_hidden), s.critic_lr
        )
        self.updates = 0

    def sample(self, x: torch.Tensor, noise: float = 0.0) -> torch.Tensor:
        """Unit-box actions from the DDPM, with ``N(0, noise)`` added and clipped to the box."""
        u = self.ddpm.sample(self.actor, x)
        return (u + noise * torch.randn_like(u)).clamp(-1, 1) if noise else u

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        u = self.sample(as_batch(obs), self.settings.expl_noise if explore else 0.0)
        return self.box.to_env(u)[0].numpy()

    def grad_q(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``grad_u Q(x, u)`` in unit-box coordinates, the mean over the two critics."""
        u = u.detach().requires_grad_(True)
        q1, q2 = self.critic(x, self.box.to_env(u))
        return torch.autograd.grad((q1 + q2).sum() / 2, u)[0]

    def score_loss(self, x: torch.Tensor, u0: torch.Tensor) -> torch.Tensor:
        """The Q-score matching loss at noisy replayed actions."""
        t = torch.randint(0, self.settings.T, (x.shape[0],))
        u_t = self.ddpm.noise(u0, t, torch.randn_like(u0))
        target = -self.settings.M_q * self.grad_q(x, u_t)
        return F.mse_loss(self.actor(x, u_t, t), target)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        s, box = self.settings, self.box
        x, a = batch["obs"], batch["action"]
        with torch.no_grad():
            a_next = box.to_env(self.sample(batch["next_obs"], s.target_noise))
            q_next = torch.min(*self.critic_target(batch["next_obs"], a_next))
            target = bootstrapped(batch, q_next, s.gamma)
        info = fit_critic(self.critic, self.critic_opt, x, a, target)
        score_loss = self.score_loss(x, box.to_unit(a))
        descend(self.actor_opt, score_loss)
        self.updates += 1
        soft_update(self.critic_target, self.critic, s.tau)
        return info | {"score_loss": score_loss.item()}
