"""TD3 (Fujimoto, van Hoof and Meger 2018), the whole agent in one file.

A deterministic actor ``mu(x)`` in the env's action box, twin critics, and three changes to DDPG:

1. **clipped double-Q**: the TD target takes the smaller of the two target critics;
2. **target policy smoothing**: the target action is ``mu'(x') + clip(N(0, policy_noise),
   -noise_clip, noise_clip)``, clipped to the box;
3. **delayed actor updates**: the actor and the target networks move once every
   ``policy_delay`` critic updates, the actor by ascending ``Q_1(x, mu(x))``.

Exploration adds ``N(0, expl_noise)`` to ``mu(x)``. Noise scales are fractions of the box's half
width, so the defaults are the paper's (stated for boxes ``[-1, 1]``) on any box. The defaults
are those of the paper's experiments, whose learning curves the book compares with: 400 and 300
hidden units, Adam at 1e-3, batches of 100 (``TRAIN_DEFAULTS``) and 1k uniformly random steps
(10k on HalfCheetah and Ant: :data:`cqsm.rl.presets.TASKS`). The authors' later reference code uses
256x256 networks, 3e-4 and batches of 256; chapter 7 measures that variant too.
"""

from __future__ import annotations

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
    target_rate,
    unwrapped,
    with_target,
)
from cqsm.rl.envs import interval_of
from cqsm.settings import check_positive, check_widths

__all__ = ["TD3Settings", "TD3Agent"]


@dataclass
class TD3Settings:
    """Settings of TD3 (the paper's defaults; noise as a fraction of the box half-width)."""

    gamma: float = 0.99
    """discount factor per env step"""
    hidden: tuple[int, ...] = (400, 300)
    """hidden layer widths of the actor and the critics"""
    actor_lr: float = 1e-3
    """Adam learning rate of the actor"""
    critic_lr: float = 1e-3
    """Adam learning rate of the critics"""
    tau: float = 0.005
    """Polyak rate of the target networks per update"""
    tau_interval: float | None = None
    """the control interval, seconds, at which ``tau`` is the target critics' rate: at an
    interval ``dt`` it is ``tau * tau_interval / dt`` (at most 1; the target actor keeps
    ``tau``); None: ``tau`` per update, whatever the interval"""
    expl_noise: float = 0.1
    """standard deviation of the Gaussian exploration noise"""
    expl_noise_hold: float | None = None
    """seconds each exploration noise draw is held, at least one control step (the time-aware
    rule holds it for the env's own interval); None: a fresh draw every control step"""
    policy_noise: float = 0.2
    """standard deviation of the target policy smoothing noise"""
    noise_clip: float = 0.5
    """the smoothing noise is clipped to +-noise_clip"""
    policy_delay: int = 2
    """critic updates per actor (and target network) update"""

    def __post_init__(self):
        check_positive(self, "gamma", "actor_lr", "critic_lr", "tau")
        check_positive(self, "expl_noise_hold", "tau_interval", optional=True)
        check_positive(self, "policy_delay", integer=True)
        check_widths(self, "hidden")


class TD3Agent(Saved):
    """TD3 acting directly in the env's action box."""

    Settings = TD3Settings
    PARTS = ("actor", "actor_target", "critic", "critic_target", "actor_opt", "critic_opt")
    POLICY_PARTS = ("actor",)
    TRAIN_DEFAULTS = {"learning_starts": 1_000, "batch_size": 100}  # the paper's; see TASKS

    wrap = staticmethod(unwrapped)

    def __init__(self, settings: TD3Settings, env: gym.Env):
        self.settings = s = settings
        self.box = ActionBox(env.action_space, "TD3")
        n, d = obs_dim(env), self.box.d
        self.actor, self.actor_target, self.actor_opt = with_target(
            deep_mlp(n, s.hidden, d), s.actor_lr
        )
        self.critic, self.critic_target, self.critic_opt = with_target(
            TwinCritic(n, d, s.hidden), s.critic_lr
        )
        self.updates = 0
        self.critic_tau = target_rate(s.tau, s.tau_interval, interval_of(env).dt)  # per update
        self.noise = HeldNoise(s.expl_noise_hold, interval_of(env).dt, d)

    def policy(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """``mu(x)`` in the env's units (``target=True``: the target actor's)."""
        return self.box.to_env(torch.tanh((self.actor_target if target else self.actor)(obs)))

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        a = self.policy(as_batch(obs))[0]
        if explore:
            a = self.box.clip(a + self.settings.expl_noise * self.box.half * self.noise.draw(a))
        return a.numpy()

    def state_dict(self) -> dict:
        return super().state_dict() | self.noise.state_dict()

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.noise.load_state_dict(state)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        s, box = self.settings, self.box
        x, a = batch["obs"], batch["action"]
        with torch.no_grad():
            noise = (s.policy_noise * torch.randn_like(a)).clamp(-s.noise_clip, s.noise_clip)
            a_next = box.clip(self.policy(batch["next_obs"], target=True) + noise * box.half)
            q_next = torch.min(*self.critic_target(batch["next_obs"], a_next))
            target = bootstrapped(batch, q_next, s.gamma)
        info = fit_critic(self.critic, self.critic_opt, x, a, target)
        self.updates += 1
        if self.updates % s.policy_delay == 0:
            actor_loss = -self.critic.first(x, self.policy(x)).mean()
            descend(self.actor_opt, actor_loss)
            soft_update(self.critic_target, self.critic, self.critic_tau)
            soft_update(self.actor_target, self.actor, s.tau)
            info["actor_loss"] = actor_loss.item()
        return info
