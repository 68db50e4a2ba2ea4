"""The replay buffer of every agent: ``(obs, action, reward, next_obs, terminated)``.

For CQSM the action is the score value ``Psi_k`` and ``next_obs = (x_{k+1}, a_k)`` carries the
applied action, so one layout serves every algorithm. ``terminated`` stops bootstrapping;
truncated transitions are stored with ``terminated = 0`` and their real final observation.
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

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        """A batch of ``batch_size`` transitions (with replacement) as float32 tensors."""
        index = self.rng.integers(0, self.size, size=batch_size)
        return {name: torch.from_numpy(getattr(self, name)[index]) for name in self.FIELDS}

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
