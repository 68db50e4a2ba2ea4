"""The control interval in seconds: one implementation for every algorithm.

    from cqsm.rl.envs import make
    env = make("HalfCheetah-v5", control_interval=0.01)   # frame_skip=1, 5,000-step episodes
    interval_of(env)                                      # Interval(dt=0.01, native_dt=0.05, ...)

How an interval is realised:

- a MuJoCo env that takes ``frame_skip`` (Gymnasium's ``-v5`` tasks) gets the frame skip that
  makes its step last the interval, so any whole multiple of the physics step works, shorter
  than the native interval too (HalfCheetah-v5 at 0.01 s is ``frame_skip=1``);
- any other env (Pendulum) repeats the action over a whole number of its native steps.

The episode's time limit stays the same in seconds (HalfCheetah-v5: 50 s, so 5,000 control
steps at 0.01 s; rounded to whole control steps where it does not divide). Returns stay
comparable across intervals: :attr:`Interval.reward_scale` turns a control step's reward into the
env's native units, what the same trajectory scores in native per-step rewards over the same
simulated time. With a frame skip the step's reward is a rate (MuJoCo ``-v5`` rewards are
velocities and costs per step), so it scales by ``dt / native_dt``; a repeated action already sums
the native rewards, so it scales by 1. At the native interval the scale is exactly 1.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import lru_cache

import gymnasium as gym

__all__ = [
    "EnvError",
    "Interval",
    "Native",
    "native",
    "ControlInterval",
    "interval_of",
    "resolve",
    "repeat_step",
]

# How close a ratio of intervals must be to a whole number to count as one.
_WHOLE = 1e-6


class EnvError(ValueError):
    """An environment or wrapper setting that cannot work, with what to do instead."""


@dataclass(frozen=True)
class Interval:
    """How a control interval is realised on an env."""

    dt: float
    """the control interval, seconds"""
    native_dt: float
    """the env's own control interval, seconds"""
    frame_skip: int | None = None
    """physics steps per control step, where the env's frame skip realises the interval"""
    repeat: int = 1
    """native env steps per control step (an action repeat; 1 where a frame skip is used)"""
    episode_steps: int | None = None
    """the episode's time limit in control steps (None: the env has none)"""

    @property
    def native(self) -> bool:
        """Whether this is the env's own interval."""
        return abs(self.dt - self.native_dt) <= _WHOLE * self.native_dt

    @property
    def reward_scale(self) -> float:
        """A control step's reward times this is in the env's native units."""
        return 1.0 if self.native or self.frame_skip is None else self.dt / self.native_dt

    @property
    def reward_dt(self) -> float:
        """The seconds over which each reward summand is a rate: its integral over the step is
        ``reward * reward_dt`` (a repeated action sums native rewards of ``native_dt`` each)."""
        return self.native_dt if self.frame_skip is None else self.dt

    def record(self, total_steps: int | None = None) -> dict:
        """The resolved interval, for a run's ``settings.json``, with a budget of
        ``total_steps`` control steps in simulated seconds."""
        return {
            "control_interval": self.dt,
            "native_dt": self.native_dt,
            "frame_skip": self.frame_skip,
            "repeat": self.repeat,
            "episode_steps": self.episode_steps,
            "total_seconds": None if total_steps is None else total_steps * self.dt,
        }


def _takes_frame_skip(env: gym.Env) -> bool:
    base = env.unwrapped
    if not (hasattr(base, "frame_skip") and hasattr(base, "model")):
        return False
    return "frame_skip" in inspect.signature(type(base).__init__).parameters


@dataclass(frozen=True)
class Native:
    """What an env id is before any interval is set: its step, physics step, frame skip, time
    limit and action space."""

    dt: float | None
    physics_dt: float | None
    frame_skip: int | None
    limit: int | None
    action_space: gym.Space


@lru_cache(maxsize=64)
def native(env_id: str, make) -> Native:
    """The :class:`Native` timing of ``env_id`` (made once by ``make`` and remembered)."""
    env = make(env_id)
    try:
        dt = getattr(env.unwrapped, "dt", None)
        dt = float(dt) if dt is not None and math.isfinite(dt) and dt > 0 else None
        limit = env.spec.max_episode_steps if env.spec is not None else None
        if _takes_frame_skip(env):
            base = env.unwrapped
            physics = float(base.model.opt.timestep)
            return Native(dt, physics, int(base.frame_skip), limit, env.action_space)
        return Native(dt, None, None, limit, env.action_space)
    finally:
        env.close()


def _whole(ratio: float) -> int | None:
    k = round(ratio)
    return k if k >= 1 and abs(ratio - k) <= _WHOLE * max(1.0, ratio) else None


def resolve(env_id: str, control_interval: float | None, make) -> Interval:
    """The :class:`Interval` that realises ``control_interval`` seconds on ``env_id`` (None: the
    env's own); ``make(env_id, **kwargs)`` makes the env. An interval that cannot be realised
    raises an :class:`EnvError` naming the allowed values."""
    own = native(env_id, make)
    native_dt, physics_dt, native_skip, limit = own.dt, own.physics_dt, own.frame_skip, own.limit
    if native_dt is None:
        raise EnvError(
            f"{env_id} has no `dt` (seconds per step); a control interval needs it. Give the "
            "env a positive `dt` attribute."
        )
    if control_interval is None:
        return Interval(native_dt, native_dt, native_skip, 1, limit)
    dt = float(control_interval)
    if not math.isfinite(dt) or dt <= 0:
        raise EnvError(f"The control interval must be a positive number of seconds; got {dt!r}.")
    base, how = (
        (physics_dt, "steps its physics every")
        if physics_dt is not None
        else (native_dt, "has no frame skip; it steps every")
    )
    k = _whole(dt / base)
    if k is None:
        allowed = ", ".join(f"{i * base:g}" for i in (1, 2, 3, 4))
        raise EnvError(
            f"{env_id} {how} {base:g} s, so its control interval must be a whole multiple of "
            f"that ({allowed}, ... s; its own is {native_dt:g} s); got {dt:g} s."
        )
    if abs(dt - native_dt) <= _WHOLE * native_dt:
        return Interval(native_dt, native_dt, native_skip, 1, limit)
    if physics_dt is not None:
        steps = None if limit is None else max(1, round(limit * native_dt / dt))
        return Interval(dt, native_dt, k, 1, steps)
    # the native time limit stays; the last control step of an episode may be cut short
    return Interval(dt, native_dt, None, k, None if limit is None else math.ceil(limit / k))


def repeat_step(env: gym.Env, action, repeat: int):
    """Apply ``action`` for ``repeat`` steps of ``env`` (fewer if the episode ends); returns the
    last step's ``(x, terminated, truncated, info)`` with the rewards summed, in gym's order."""
    total, terminated, truncated = 0.0, False, False
    for _ in range(repeat):
        x, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        if terminated or truncated:
            break
    return x, total, terminated, truncated, info


class ControlInterval(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """An env stepped at a control interval: each step applies the action for
    :attr:`Interval.repeat` native steps (the frame skip, if any, is the env's own), summing the
    rewards. Made by :func:`cqsm.rl.envs.make`, which sets the frame skip and the time limit."""

    def __init__(self, env: gym.Env, interval: Interval):
        gym.utils.RecordConstructorArgs.__init__(self, interval=interval)
        gym.Wrapper.__init__(self, env)
        self.interval = interval

    @property
    def dt(self) -> float:
        """The control interval, seconds."""
        return self.interval.dt

    def step(self, action):
        if self.interval.repeat == 1:
            return self.env.step(action)
        return repeat_step(self.env, action, self.interval.repeat)


def interval_of(env: gym.Env) -> Interval:
    """The control interval of an env: that of its :class:`ControlInterval` wrapper, else the
    env's own ``dt``."""
    inner = env
    while isinstance(inner, gym.Wrapper):
        if isinstance(inner, ControlInterval):
            return inner.interval
        inner = inner.env
    dt = getattr(env.unwrapped, "dt", None)
    if dt is None:
        raise EnvError(
            f"{env} has no `dt` (seconds per step); a control interval needs it. Give the env "
            "a `dt` attribute."
        )
    limit = env.spec.max_episode_steps if env.spec is not None else None
    skip = int(env.unwrapped.frame_skip) if _takes_frame_skip(env) else None
    return Interval(float(dt), float(dt), skip, 1, limit)
