"""The action as a diffusion: any Gymnasium env with a ``Box`` action space as the augmented system.

At control step ``k`` the agent observes ``(x_k, a_{k-1})``, the latest state and the action in
force, and returns a score value ``Psi_k`` (action units per second). The wrapper moves the action

    a_k = boundary(a_{k-1} + Psi_k dt + sigma_a sqrt(dt) eps_k)

and only then does the env apply ``a_k`` for ``dt`` seconds, the env's control interval
(:mod:`cqsm.rl.envs.interval`). Everything is in physical units, so a different control interval
leaves the continuous-time problem unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import gymnasium as gym
import numpy as np
import torch

from cqsm.rl.envs.interval import EnvError, interval_of

__all__ = ["ActionDiffusion", "ActionDiffusionWrapper", "BOUNDARIES", "EnvError"]

BOUNDARIES = ("reflect", "project", "squash")


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise EnvError(f"{name} must be a positive number (physical units); got {value!r}.")
    return value


def _where(mask, x, y):
    """``x`` where ``mask`` holds, else ``y``: numpy or torch alike."""
    return torch.where(mask, x, y) if isinstance(x, torch.Tensor) else np.where(mask, x, y)


@dataclass(frozen=True)
class ActionDiffusion:
    """The Euler step of ``da = Psi dt + sigma_a dB`` kept in the box ``[low, high]``.

    ``boundary="reflect"``: ``a`` lives in the box and an Euler step that leaves it is mirrored
    at the face it crossed. ``boundary="project"``: a step that leaves the box ends on its nearest
    point (the projected Euler scheme). Both are Euler schemes of the same reflected diffusion and
    agree as ``dt -> 0``; they differ when a step is a sizeable part of the box: a score pushing
    out of the box holds the projected action at the face, while the mirrored one bounces back
    inside. For both the state variable is the applied action. ``boundary="squash"``: the state
    variable is an unbounded latent ``u`` and the env applies ``low + (high - low)(1 + tanh u)/2``.
    A box with infinite faces (the LQ env) makes every boundary the identity. Works on numpy
    arrays and on torch tensors alike, so the wrapper and the agent's TD target use the same step.
    """

    low: np.ndarray
    high: np.ndarray
    dt: float
    sigma_a: float
    boundary: str = "reflect"

    def __post_init__(self):
        _check_positive("dt", self.dt)
        if not math.isfinite(self.sigma_a) or self.sigma_a < 0:
            raise EnvError(f"sigma_a must be >= 0 (per square-root second); got {self.sigma_a!r}.")
        if self.boundary not in BOUNDARIES:
            raise EnvError(f"Unknown boundary {self.boundary!r}; choose one of {BOUNDARIES}.")
        if np.any(self.low >= self.high):
            raise EnvError(f"The action box is empty: low={self.low}, high={self.high}.")

    @property
    def d(self) -> int:
        return int(self.low.shape[0])

    @cached_property
    def bounded(self) -> np.ndarray:
        return np.isfinite(self.low) & np.isfinite(self.high)

    @cached_property
    def _finite(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(low, high, bounded)`` with the infinite faces replaced by harmless numbers."""
        mask = self.bounded
        return np.where(mask, self.low, 0.0), np.where(mask, self.high, 1.0), mask

    @cached_property
    def _torch_finite(self) -> dict:
        return {}

    def state_space(self) -> gym.spaces.Box:
        """The space of the action process's state (the applied action, or the latent)."""
        if self.boundary == "squash":
            low = np.where(self.bounded, -np.inf, self.low)
            high = np.where(self.bounded, np.inf, self.high)
            return gym.spaces.Box(low.astype(np.float32), high.astype(np.float32))
        return gym.spaces.Box(self.low.astype(np.float32), self.high.astype(np.float32))

    def initial(self) -> np.ndarray:
        """The action in force before the first step: the box centre (zero where unbounded)."""
        lo, hi, mask = self._bounds(self.low)
        centre = np.where(mask, 0.5 * (lo + hi), 0.0)
        return np.zeros(self.d) if self.boundary == "squash" else centre

    def _bounds(self, like):
        """:attr:`_finite` as arrays like ``like`` (torch tensors made once per dtype)."""
        if not isinstance(like, torch.Tensor):
            return self._finite
        if like.dtype not in self._torch_finite:
            lo, hi, mask = self._finite
            self._torch_finite[like.dtype] = (
                torch.as_tensor(lo, dtype=like.dtype),
                torch.as_tensor(hi, dtype=like.dtype),
                torch.as_tensor(mask),
            )
        return self._torch_finite[like.dtype]

    def keep(self, a):
        """The boundary map: reflect or project into the box, or (squash) leave the latent
        unbounded."""
        if self.boundary == "squash":
            return a
        lo, hi, mask = self._bounds(a)
        if self.boundary == "project":
            clip = torch.clamp if isinstance(a, torch.Tensor) else np.clip
            return _where(mask, clip(a, lo, hi), a)
        width = hi - lo
        y = (a - lo) % (2 * width)
        return _where(mask, lo + width - abs(y - width), a)

    def applied(self, state):
        """The action the env applies for a state of the action process."""
        if self.boundary != "squash":
            return state
        lo, hi, mask = self._bounds(state)
        tanh = torch.tanh if isinstance(state, torch.Tensor) else np.tanh
        return _where(mask, lo + (hi - lo) * 0.5 * (1 + tanh(state)), state)

    def mean_move(self, a, psi):
        """``boundary(a + Psi dt)``: the move without noise (the actor's ``a_hat``)."""
        return self.keep(a + psi * self.dt)

    def run(self, a: np.ndarray, psi, seconds: float, rng: np.random.Generator) -> np.ndarray:
        """The state after ``seconds`` of moves under a fixed score value (``a``: ``(N, d)``)."""
        for _ in range(round(seconds / self.dt)):
            a = self.move(a, psi, rng.standard_normal(a.shape))
        return a

    def move(self, a, psi, eps):
        """``boundary(a + Psi dt + sigma_a sqrt(dt) eps)`` for standard normal ``eps``."""
        return self.keep(a + psi * self.dt + self.sigma_a * math.sqrt(self.dt) * eps)


def default_rate_scale(space: gym.spaces.Box) -> float:
    """Sweep the box in 0.1 s: ten box widths per second (an infinite side counts as 2)."""
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    width = np.where(np.isfinite(high - low), high - low, 2.0)
    return float(np.max(width)) / 0.1


class ActionDiffusionWrapper(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Make a ``Box``-action env the augmented continuous-time system of the book.

    Observation: ``concat(x_k, a_{k-1})`` (``a`` is the latent with ``boundary="squash"``).
    Action: the score value ``Psi`` in action units per second, clipped to ``+-rate_scale``.
    Reward: the env's own reward, as the other agents get it; its integral over the step is
    ``reward * base_dt`` (rewards are rates; ``base_dt`` is the interval's
    :attr:`~cqsm.rl.envs.interval.Interval.reward_dt`). ``info`` holds the applied action, the
    score value used and ``dt``. The control interval ``dt`` is the env's
    (:func:`~cqsm.rl.envs.interval.interval_of`: made by :func:`cqsm.rl.envs.make` at any interval).

    Args:
        env: a Gymnasium env with a ``Box`` action space.
        sigma_a: noise of the action process, action units per square-root second.
        rate_scale: the largest score value, action units per second (``None``: sweep the box in
            0.1 s, i.e. ten box widths per second).
        boundary: ``"reflect"``, ``"project"`` or ``"squash"`` (see :class:`ActionDiffusion`).
        explore: ``False`` runs the action process with ``sigma_a = 0`` (evaluation).
    """

    def __init__(
        self,
        env: gym.Env,
        sigma_a: float = 1.0,
        rate_scale: float | None = None,
        boundary: str = "reflect",
        explore: bool = True,
    ):
        gym.utils.RecordConstructorArgs.__init__(
            self,
            sigma_a=sigma_a,
            rate_scale=rate_scale,
            boundary=boundary,
            explore=explore,
        )
        gym.Wrapper.__init__(self, env)
        space = env.action_space
        if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
            raise EnvError(
                f"The action diffusion needs a one-dimensional Box action space; "
                f"{env.spec.id if env.spec else env} has {space}. Discrete or structured "
                "actions cannot be a diffusion."
            )
        self.interval = interval_of(env)
        _check_positive("env.dt", self.interval.dt)
        self.base_dt = self.interval.reward_dt
        self.native_dt = self.interval.native_dt
        low, high = space.low.astype(np.float64), space.high.astype(np.float64)
        if rate_scale is None:
            rate_scale = default_rate_scale(space)
        self.rate_scale = _check_positive("rate_scale", rate_scale)
        self.diffusion = ActionDiffusion(low, high, self.interval.dt, float(sigma_a), boundary)
        self.explore = bool(explore)
        self.n = int(np.prod(env.observation_space.shape))
        state = self.diffusion.state_space()
        obs = env.observation_space
        self.observation_space = gym.spaces.Box(
            np.concatenate([np.broadcast_to(obs.low, obs.shape).ravel(), state.low]).astype(
                np.float32
            ),
            np.concatenate([np.broadcast_to(obs.high, obs.shape).ravel(), state.high]).astype(
                np.float32
            ),
        )
        d = self.diffusion.d
        self.action_space = gym.spaces.Box(-self.rate_scale, self.rate_scale, (d,), np.float32)
        self._a = self.diffusion.initial()
        self._rng = np.random.default_rng()

    @property
    def dt(self) -> float:
        """The control interval in seconds."""
        return self.diffusion.dt

    def _observe(self, x) -> np.ndarray:
        return np.concatenate([np.asarray(x, dtype=np.float64).ravel(), self._a]).astype(np.float32)

    def reset(self, *, seed=None, options=None):
        x, info = self.env.reset(seed=seed, options=options)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self.action_space.seed(seed)
        self._a = self.diffusion.initial()
        return self._observe(x), info

    def step(self, action):
        psi = np.asarray(action, dtype=np.float64)
        if psi.shape != (self.diffusion.d,):
            raise EnvError(
                f"The score value must have shape ({self.diffusion.d},) (one rate per "
                f"action dimension); got shape {psi.shape}."
            )
        if not np.all(np.isfinite(psi)):
            raise EnvError(f"The score value is not finite: {psi}.")
        psi = np.clip(psi, -self.rate_scale, self.rate_scale)
        eps = (
            self._rng.standard_normal(self.diffusion.d)
            if self.explore
            else np.zeros(self.diffusion.d)
        )
        self._a = self.diffusion.move(self._a, psi, eps)
        applied = self.diffusion.applied(self._a).astype(self.env.action_space.dtype)
        x, reward, terminated, truncated, info = self.env.step(applied)
        info = dict(info, applied_action=applied, score=psi, dt=self.dt)
        return self._observe(x), reward, terminated, truncated, info

    # The state of the action process and its noise, for exact checkpoints at episode ends.
    def get_wrapper_state(self) -> dict:
        return {"a": self._a.copy(), "rng": self._rng.bit_generator.state}

    def set_wrapper_state(self, state: dict) -> None:
        self._a = np.asarray(state["a"], dtype=np.float64)
        self._rng.bit_generator.state = state["rng"]
