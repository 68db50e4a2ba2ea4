"""Diffusion-QL (Wang, Hunt and Zhou 2023) run online on the replay buffer, in one file.

The policy is a DDPM of ``T = 5`` steps (:mod:`cqsm.rl.agents.ddpm`). Each update:

1. **Critics**: twin Mish critics regress on ``r + gamma (1 - terminated) min_j Qbar_j(x', a')``
   with ``a'`` sampled from the EMA copy of the actor;
2. **Actor**: the behaviour-cloning diffusion loss ``|eps - eps_theta(x, u_t, t)|^2`` on replayed
   actions plus ``eta`` times the normalised Q term ``-Q_i(x, a_theta) / mean|Q_j(x, a_theta)|``,
   where ``a_theta`` is sampled through the whole reverse chain (differentiated) and ``i, j`` are
   the two critics in random order;
3. gradient norms clipped, targets by Polyak averaging, and the EMA actor updated every
   ``ema_every`` steps after ``ema_start``.

Acting samples ``n_candidates`` actions and picks one with probabilities ``softmax(Qbar_min)``, as
the original code does. The original defaults (networks of three 256-wide Mish layers, learning
rates, ``eta = 1``, gradient-norm clip 9, EMA 0.995) are kept. Adaptations to the online setting,
stated in the book: the replay buffer is the data set (so the behaviour-cloning term pulls toward
the agent's own recent behaviour), exploration adds Gaussian noise of ``expl_noise`` half-widths
to the acting sample, and the learning rate does not decay (the original anneals it over its
offline epochs).
"""

from __future__ import annotations

from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cqsm.rl.agents.common import (
    ActionBox,
    Mish,
    Saved,
    TwinCritic,
    as_batch,
    bootstrapped,
    deep_mlp,
    descend,
    fit_critic,
    obs_dim,
    soft_update,
    unwrapped,
    with_target,
)
from cqsm.rl.agents.ddpm import DDPM, Denoiser
from cqsm.settings import check_positive, check_widths

__all__ = ["DiffusionQLSettings", "DiffusionQLAgent", "MishTwinCritic"]


@dataclass
class DiffusionQLSettings:
    """Settings of Diffusion-QL online (the original defaults for the locomotion data sets)."""

    gamma: float = 0.99
    """discount factor per env step"""
    T: int = 5
    """denoising steps of the DDPM actor"""
    hidden: tuple[int, ...] = (256, 256, 256)
    """hidden layer widths (Mish) of the denoiser and the critics"""
    actor_lr: float = 3e-4
    """Adam learning rate of the denoiser"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    eta: float = 1.0
    """weight of the normalised Q term against the behaviour-cloning loss"""
    grad_norm: float = 9.0
    """gradient-norm clip of the actor and of the critics"""
    tau: float = 0.005
    """Polyak rate of the target critics"""
    ema_decay: float = 0.995
    """decay of the EMA actor that samples the TD target's next actions"""
    ema_start: int = 1000
    """updates before the EMA actor starts following (until then it keeps its initial weights)"""
    ema_every: int = 5
    """updates between EMA steps"""
    n_candidates: int = 50
    """actions sampled per step when acting; one is drawn by softmax of the target critic"""
    expl_noise: float = 0.1
    """Gaussian exploration noise added when training, in half-widths of the box (online only)"""

    def __post_init__(self):
        check_positive(self, "gamma", "actor_lr", "critic_lr", "grad_norm", "tau", "ema_decay")
        check_positive(self, "T", "ema_every", "n_candidates", integer=True)
        check_widths(self, "hidden")


class MishTwinCritic(TwinCritic):
    """Twin critics with Mish activations (Diffusion-QL's critic)."""

    def __init__(self, x_dim: int, a_dim: int, hidden: tuple[int, ...]):
        nn.Module.__init__(self)
        self.q1 = deep_mlp(x_dim + a_dim, hidden, 1, activation=Mish)
        self.q2 = deep_mlp(x_dim + a_dim, hidden, 1, activation=Mish)


class DiffusionQLAgent(Saved):
    """Diffusion-QL acting directly in the env's action box."""

    Settings = DiffusionQLSettings
    PARTS = ("actor", "ema_actor", "critic", "critic_target", "actor_opt", "critic_opt")
    POLICY_PARTS = ("actor", "critic_target")  # acting ranks candidates by the target critic

    wrap = staticmethod(unwrapped)

    def __init__(self, settings: DiffusionQLSettings, env: gym.Env):
        self.settings = s = settings
        self.box = ActionBox(env.action_space, "Diffusion-QL")
        n, d = obs_dim(env), self.box.d
        self.ddpm = DDPM(s.T, d)
        self.actor, self.ema_actor, self.actor_opt = with_target(
            Denoiser(n, d, s.hidden), s.actor_lr
        )
        self.critic, self.critic_target, self.critic_opt = with_target(
            MishTwinCritic(n, d, s.hidden), s.critic_lr
        )
        self.updates = 0

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        s = self.settings
        x = as_batch(obs).expand(s.n_candidates, -1)
        a = self.box.to_env(self.ddpm.sample(self.actor, x))
        weights = torch.softmax(torch.min(*self.critic_target(x, a)), 0)
        a = a[torch.multinomial(weights, 1)[0]]
        if explore:
            a = self.box.clip(a + s.expl_noise * self.box.half * torch.randn_like(a))
        return a.numpy()

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        s, box = self.settings, self.box
        x, a = batch["obs"], batch["action"]

        # Critics: next actions from the EMA actor.
        with torch.no_grad():
            a_next = box.to_env(self.ddpm.sample(self.ema_actor, batch["next_obs"]))
            q_next = torch.min(*self.critic_target(batch["next_obs"], a_next))
            target = bootstrapped(batch, q_next, s.gamma)
        info = fit_critic(self.critic, self.critic_opt, x, a, target, clip_norm=s.grad_norm)

        # Actor: behaviour cloning by the diffusion loss, plus the normalised Q term.
        u0 = box.to_unit(a)
        t = torch.randint(0, s.T, (x.shape[0],))
        eps = torch.randn_like(u0)
        bc_loss = F.mse_loss(self.actor(x, self.ddpm.noise(u0, t, eps), t), eps)
        q_new = self.critic(x, box.to_env(self.ddpm.sample(self.actor, x)))
        i = int(torch.randint(0, 2, ()).item())  # which critic leads, at random
        q_loss = -q_new[i].mean() / q_new[1 - i].abs().mean().detach()
        descend(self.actor_opt, bc_loss + s.eta * q_loss, clip_norm=s.grad_norm)

        self.updates += 1
        if self.updates % s.ema_every == 0 and self.updates >= s.ema_start:
            soft_update(self.ema_actor, self.actor, 1 - s.ema_decay)
        soft_update(self.critic_target, self.critic, s.tau)
        return info | {"bc_loss": bc_loss.item(), "q_loss": q_loss.item()}
