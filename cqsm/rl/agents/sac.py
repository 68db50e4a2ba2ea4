"""Soft Actor-Critic (Haarnoja et al. 2018) with automatic entropy tuning, in one file.

The policy is a tanh-squashed Gaussian ``a = center + half * tanh(m(x) + s(x) eps)`` with its
log-density corrected for the squashing; twin critics regress on

    r + gamma (1 - terminated) ( min_j Qbar_j(x', a') - alpha log pi(a' | x') ),  a' ~ pi(. | x'),

the actor minimises ``alpha log pi(a | x) - min_j Q_j(x, a)``, and the temperature ``alpha``
moves so that the policy's entropy approaches ``target_entropy`` (``-dim(A)`` by default). As in
the well-known single-file implementation, the critics learn at 1e-3, the actor at 3e-4, and the
actor (with alpha) makes ``policy_delay`` updates once every ``policy_delay`` critic updates.
Evaluation acts with the mean action ``center + half * tanh(m(x))``. With ``noise_hold`` (the
time-aware rule of ``cqsm.rl.interval_study``), training's actions hold each draw of
``eps`` for that many seconds (:class:`cqsm.rl.agents.common.HeldNoise`, as TD3's
``expl_noise_hold``); the updates sample afresh.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from cqsm.rl.agents.common import (
    ActionBox,
    HeldNoise,
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
from cqsm.rl.envs import interval_of
from cqsm.settings import check_positive, check_widths

__all__ = ["SACSettings", "SACAgent"]

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclass
class SACSettings:
    """Settings of SAC (the defaults of the well-known single-file implementation)."""

    gamma: float = 0.99
    """discount factor per env step"""
    hidden: tuple[int, ...] = (256, 256)
    """hidden layer widths of the actor and the critics"""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics and of the temperature"""
    tau: float = 0.005
    """Polyak rate of the target critics"""
    policy_delay: int = 2
    """every this many critic updates, this many actor and temperature updates"""
    alpha: float = 1.0
    """initial entropy temperature"""
    autotune: bool = True
    """tune the temperature toward target_entropy (False: alpha stays fixed)"""
    target_entropy: float | None = None
    """entropy the temperature aims for, nats (None: -dim(A))"""
    noise_hold: float | None = None
    """seconds each draw of the policy's standard normal noise is held in training's actions, at
    least one control step (the time-aware rule holds it for the env's own interval; the
    critics' and actor's updates sample afresh); None: a fresh draw every control step"""

    def __post_init__(self):
        check_positive(self, "gamma", "actor_lr", "critic_lr", "tau", "alpha")
        check_positive(self, "noise_hold", optional=True)
        check_positive(self, "policy_delay", integer=True)
        check_widths(self, "hidden")


class SACAgent(Saved):
    """SAC acting directly in the env's action box."""

    Settings = SACSettings
    PARTS = ("actor", "critic", "critic_target", "actor_opt", "critic_opt", "alpha_opt")
    POLICY_PARTS = ("actor",)

    wrap = staticmethod(unwrapped)

    def __init__(self, settings: SACSettings, env: gym.Env):
        self.settings = s = settings
        self.box = ActionBox(env.action_space, "SAC")
        n, d = obs_dim(env), self.box.d
        self.actor = deep_mlp(n, s.hidden, 2 * d)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=s.actor_lr, fused=True)
        self.critic, self.critic_target, self.critic_opt = with_target(
            TwinCritic(n, d, s.hidden), s.critic_lr
        )
        self.log_alpha = torch.nn.Parameter(torch.tensor(math.log(s.alpha)))
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=s.critic_lr)
        self.target_entropy = -float(d) if s.target_entropy is None else s.target_entropy
        self.noise = HeldNoise(s.noise_hold, interval_of(env).dt, d)
        self.updates = 0

    def load_state_dict(self, state: dict) -> None:
        # log_alpha is the parameter alpha_opt holds: restore it in place
        super().load_state_dict(state)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self.noise.load_state_dict(state)

    def state_dict(self) -> dict:
        own = {"log_alpha": self.log_alpha.detach().clone()} | self.noise.state_dict()
        return super().state_dict() | own

    def sample(
        self, obs: torch.Tensor, noise: HeldNoise | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """An action ``a ~ pi(. | x)``, its log-density and the mean action, all in env units;
        ``noise``: where the standard normal draw comes from (default: a fresh one)."""
        mean, log_std = self.actor(obs).chunk(2, -1)
        log_std = LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (torch.tanh(log_std) + 1)
        std = log_std.exp()
        z = mean + std * (torch.randn_like(mean) if noise is None else noise.draw(mean))
        u = torch.tanh(z)
        # Gaussian log-density of z, then the change of variables a = center + half tanh(z)
        log_prob = -0.5 * (((z - mean) / std).square() + 2 * log_std + math.log(2 * math.pi))
        log_prob = log_prob - torch.log(self.box.half * (1 - u.square()) + 1e-6)
        return self.box.to_env(u), log_prob.sum(-1), self.box.to_env(torch.tanh(mean))

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        a, _, mean = self.sample(as_batch(obs), self.noise if explore else None)
        return (a if explore else mean)[0].numpy()

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        s = self.settings
        x, a = batch["obs"], batch["action"]
        alpha = self.log_alpha.exp().item()
        with torch.no_grad():
            a_next, log_pi_next, _ = self.sample(batch["next_obs"])
            q_next = torch.min(*self.critic_target(batch["next_obs"], a_next))
            soft = q_next - alpha * log_pi_next
            target = bootstrapped(batch, soft, s.gamma)
        info = fit_critic(self.critic, self.critic_opt, x, a, target)
        self.updates += 1
        if self.updates % s.policy_delay == 0:
            for _ in range(s.policy_delay):  # as many actor updates as critic updates
                a_pi, log_pi, _ = self.sample(x)
                actor_loss = (alpha * log_pi - torch.min(*self.critic(x, a_pi))).mean()
                descend(self.actor_opt, actor_loss)
                if s.autotune:
                    entropy_gap = (-log_pi.detach() - self.target_entropy).mean()
                    descend(self.alpha_opt, self.log_alpha.exp() * entropy_gap)
                    alpha = self.log_alpha.exp().item()
            info |= {"actor_loss": actor_loss.item(), "entropy": -log_pi.mean().item()}
        soft_update(self.critic_target, self.critic, s.tau)
        info["alpha"] = alpha
        return info
