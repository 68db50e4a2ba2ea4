"""Environments: the action-diffusion wrapper, the LQ system as an env, and ``make``.

Importing this package registers ``cqsm/LinearQuadratic-v0`` (the stationary scalar problem of
:func:`cqsm.lq.example`) with Gymnasium.
"""

from __future__ import annotations

import difflib

import gymnasium as gym

from cqsm.envs.action_diffusion import BOUNDARIES, ActionDiffusion, ActionDiffusionWrapper, EnvError
from cqsm.envs.lq import LinearQuadraticEnv

__all__ = [
    "ActionDiffusion",
    "ActionDiffusionWrapper",
    "BOUNDARIES",
    "EnvError",
    "LinearQuadraticEnv",
    "make",
]

LQ_ENV_ID = "cqsm/LinearQuadratic-v0"
if LQ_ENV_ID not in gym.registry:
    gym.register(LQ_ENV_ID, entry_point="cqsm.envs.lq:LinearQuadraticEnv")


def make(env_id: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` with an error that names the closest registered ids."""
    try:
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
