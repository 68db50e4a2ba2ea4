"""Environments: the control interval, the action-diffusion wrapper, the LQ system as an env,
and ``make``.

Importing this package registers ``cqsm/LinearQuadratic-v0`` (the stationary scalar problem of
:func:`cqsm.lq.problem.example`) with Gymnasium.
"""

from __future__ import annotations

import contextlib
import difflib
import warnings

import gymnasium as gym

from cqsm.rl.envs.action_diffusion import BOUNDARIES, ActionDiffusion, ActionDiffusionWrapper
from cqsm.rl.envs.interval import ControlInterval, EnvError, Interval, interval_of, native, resolve
from cqsm.rl.envs.linear_quadratic import LinearQuadraticEnv

__all__ = [
    "ActionDiffusion",
    "ActionDiffusionWrapper",
    "BOUNDARIES",
    "ControlInterval",
    "EnvError",
    "Interval",
    "LinearQuadraticEnv",
    "check_box_actions",
    "interval_of",
    "make",
    "native_action_space",
    "resolve_interval",
]

LQ_ENV_ID = "cqsm/LinearQuadratic-v0"
if LQ_ENV_ID not in gym.registry:
    gym.register(LQ_ENV_ID, entry_point="cqsm.rl.envs.linear_quadratic:LinearQuadraticEnv")


# A notice MuJoCo 4 gives when it compiles the -v5 models (their XML still uses an old
# attribute); it says nothing about this project's runs. MuJoCo's own handler prints each notice
# and appends it to MUJOCO_LOG.TXT in the working folder; make() hands them to Python instead.
_KNOWN_MUJOCO_NOTICES = ("compiler attribute 'settotalmass' is deprecated",)


class MujocoWarning(UserWarning):
    """A warning MuJoCo gave while an environment was made."""


@contextlib.contextmanager
def _mujoco_notices_as_warnings():
    """While making an env, turn MuJoCo's warnings into Python warnings, minus the known ones."""
    try:
        import mujoco
    except ImportError:  # no MuJoCo: nothing to route
        yield
        return

    def handler(message: str) -> None:
        if not any(known in message for known in _KNOWN_MUJOCO_NOTICES):
            warnings.warn(message, MujocoWarning, stacklevel=2)

    previous = mujoco.get_mju_user_warning()
    mujoco.set_mju_user_warning(handler)
    try:
        yield
    finally:
        mujoco.set_mju_user_warning(previous)


def _gym_make(env_id: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` with an error that names the closest registered ids."""
    try:
        with _mujoco_notices_as_warnings():
            return gym.make(env_id, **kwargs)
    except (gym.error.NameNotFound, gym.error.VersionNotFound, gym.error.NamespaceNotFound):
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise EnvError(f"Unknown environment {env_id!r}.{hint}") from None
    except gym.error.DependencyNotInstalled as err:
        raise EnvError(
            f"{env_id} needs a package that is not installed ({err}); reinstall the project with "
            "`pip install -c constraints.txt -e .`."
        ) from None


def resolve_interval(env_id: str, control_interval: float | None = None) -> Interval:
    """How ``control_interval`` seconds (None: the env's own) is realised on ``env_id``: frame
    skip or action repeat, and the time limit in control steps (:mod:`cqsm.rl.envs.interval`)."""
    return resolve(env_id, control_interval, _gym_make)


def native_action_space(env_id: str) -> gym.Space:
    """The action space of ``env_id`` (the env is made once and remembered)."""
    return native(env_id, _gym_make).action_space


def make(env_id: str, control_interval: float | None = None, **kwargs) -> gym.Env:
    """``gymnasium.make`` at a control interval in seconds (None: the env's own), wrapped in a
    :class:`~cqsm.rl.envs.interval.ControlInterval` that says how the interval is realised; an
    unknown id gets an error that names the closest registered ones."""
    interval = resolve_interval(env_id, control_interval)
    if not interval.native and interval.frame_skip is not None:
        kwargs["frame_skip"] = interval.frame_skip
        if interval.episode_steps is not None:  # the same time limit in seconds
            kwargs["max_episode_steps"] = interval.episode_steps
    return ControlInterval(_gym_make(env_id, **kwargs), interval)


def check_box_actions(env: gym.Env | str, algo: str) -> None:
    """Every algorithm here acts in a one-dimensional ``Box``: refuse any other action space
    (``env``: an env, or an env id)."""
    if isinstance(env, str):
        name, space = env, native_action_space(env)
    else:
        name, space = (env.spec.id if env.spec else env), env.action_space
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise EnvError(
            f"{algo} needs a one-dimensional Box action space (continuous control); {name} has "
            f"{space}. Choose an env with continuous actions, such as Pendulum-v1."
        )
