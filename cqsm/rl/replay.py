"""The replay buffer of every agent: ``(obs, action, reward, next_obs, terminated)``.

For CQSM the action is the score value ``Psi_k`` and ``next_obs = (x_{k+1}, a_k)`` carries the
applied action, so one layout serves every algorithm. ``terminated`` stops bootstrapping;
truncated transitions are stored with ``terminated = 0`` and their real final observation.

Transitions are stored in the order they happened, so a sampled transition can be followed for
several steps (:meth:`ReplayBuffer.sample` with ``steps > 1``, an agent's bootstrap span): the
transition after ``k`` continues it when its observation is ``k``'s next observation (a new
episode starts elsewhere) and ``k`` did not terminate.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["ReplayBuffer"]


class ReplayBuffer:
    """A ring buffer of float32 arrays, sampled uniformly by its own seeded generator."""

    FIELDS = ("obs", "action", "reward", "next_obs", "terminated")

    def __init__(self, obs_dim: int, action_dim: int, capacity: int, seed: int = 0):
        if capacity < 1:
            raise ValueError(f"The replay capacity must be a positive integer; got {capacity}.")
        self.capacity = int(capacity)
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), np.float32)
        self.action = np.zeros((capacity, action_dim), np.float32)
        self.reward = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.size = 0
        self.position = 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward: float, next_obs, terminated: bool) -> None:
        i = self.position
        self.obs[i], self.action[i], self.next_obs[i] = obs, action, next_obs
        self.reward[i], self.terminated[i] = reward, float(terminated)
        self.position = (i + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int, steps: int = 1) -> dict[str, torch.Tensor]:
        """A batch of ``batch_size`` transitions (with replacement) as float32 tensors.

        With ``steps > 1`` each is followed for up to ``steps`` transitions, as long as they
        continue it (same episode, not terminated, already stored), and the batch also holds
        ``span`` (how many, ``(B,)``), ``span_reward`` (their rewards, ``(B, steps)``, zero past
        the span), ``span_obs`` (the observations of the steps after the first, ``(B, steps -
        1, obs_dim)``, zero past the span), and ``span_next_obs`` and ``span_terminated``, those
        of the span's last transition. The same draws of the sampler as with ``steps = 1``."""
        if steps < 1:
            raise ValueError(f"steps must be a positive integer; got {steps}.")
        index = self.rng.integers(0, self.size, size=batch_size)
        batch = {name: torch.from_numpy(getattr(self, name)[index]) for name in self.FIELDS}
        if steps == 1:
            return batch
        path = self._follow(index, steps)
        span = path.sum(1)
        at = (index[:, None] + np.arange(steps)) % self.capacity
        last = at[np.arange(batch_size), span - 1]
        reward = np.where(path, self.reward[at], 0.0).astype(np.float32)
        obs = np.where(path[:, 1:, None], self.obs[at[:, 1:]], 0.0).astype(np.float32)
        return batch | {
            "span": torch.from_numpy(span.astype(np.int64)),
            "span_reward": torch.from_numpy(reward),
            "span_obs": torch.from_numpy(obs),
            "span_next_obs": torch.from_numpy(self.next_obs[last]),
            "span_terminated": torch.from_numpy(self.terminated[last]),
        }

    def _follow(self, index: np.ndarray, steps: int) -> np.ndarray:
        """``(B, steps)`` booleans: whether step ``j`` of the span from each index is in it."""
        newest = (self.position - 1) % self.capacity  # nothing follows the newest transition
        path = np.ones((index.size, steps), bool)
        here = index
        for j in range(1, steps):
            after = (here + 1) % self.capacity
            goes_on = (
                (here != newest)
                & (after < self.size)
                & (self.terminated[here] == 0)
                & np.all(self.next_obs[here] == self.obs[after], axis=1)
            )
            path[:, j] = path[:, j - 1] & goes_on
            here = after
        return path

    def state_dict(self) -> dict:
        n = self.size
        arrays = {k: getattr(self, k)[:n].copy() for k in self.FIELDS}
        return dict(arrays, size=n, position=self.position, rng=self.rng.bit_generator.state)

    def load_state_dict(self, state: dict) -> None:
        n = int(state["size"])
        for k in self.FIELDS:
            getattr(self, k)[:n] = state[k]
        self.size, self.position = n, int(state["position"])
        self.rng.bit_generator.state = state["rng"]
