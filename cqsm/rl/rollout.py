"""Stepping an env with a policy: the one loop that training, evaluation, the bench and the
diagnostics share.

    rollout = Rollout(env, seed=0)
    t = rollout.step(lambda obs: agent.act(obs, explore=True))   # resets when it must
    buffer.add(t.obs, t.action, t.reward, t.next_obs, t.terminated)

    for t in episode(env, policy, seed=7):                        # one whole episode
        total += t.reward

A reset happens lazily, at the first step of each episode, so a caller can act between episodes
(the training loop writes its checkpoints there). The policy is called with the observation
just before the env steps: a caller that needs the simulator or a frame at that moment takes it
inside the policy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

__all__ = ["Transition", "Rollout", "episode"]

Policy = Callable[[Any], Any]


@dataclass(frozen=True)
class Transition:
    """One control step: ``obs``, the ``action`` the policy returned, and what the env gave."""

    obs: Any
    action: Any
    reward: float
    next_obs: Any
    terminated: bool
    truncated: bool
    info: dict

    @property
    def done(self) -> bool:
        """The episode ended here (a terminal state or the time limit)."""
        return self.terminated or self.truncated


class Rollout:
    """Steps ``env`` across episodes; the first reset uses ``seed``, later ones continue the
    env's own generator."""

    def __init__(self, env, seed: int | None = None):
        self.env, self.obs, self._seed = env, None, seed
        self.episode_step = 0
        """Control steps taken in the episode under way (0 at its first step)."""

    @property
    def between_episodes(self) -> bool:
        """No episode is under way: the next :meth:`step` resets the env first."""
        return self.obs is None

    def step(self, policy: Policy) -> Transition:
        """Reset if between episodes, act with ``policy(obs)`` and step the env once."""
        if self.obs is None:
            self.obs, _ = self.env.reset(seed=self._seed)
            self._seed, self.episode_step = None, 0
        obs = self.obs
        action = policy(obs)
        self.episode_step += 1
        next_obs, reward, terminated, truncated, info = self.env.step(action)
        self.obs = None if terminated or truncated else next_obs
        return Transition(obs, action, reward, next_obs, terminated, truncated, info)


def episode(env, policy: Policy, seed: int | None = None) -> Iterator[Transition]:
    """The transitions of one episode from ``env.reset(seed=seed)`` to its end."""
    rollout = Rollout(env, seed)
    while True:
        transition = rollout.step(policy)
        yield transition
        if transition.done:
            return
