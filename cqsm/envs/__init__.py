"""Environments: the action-diffusion wrapper, the LQ system as an env, and ``make``.

Importing this package registers ``cqsm/LinearQuadratic-v0`` (the stationary scalar problem of
:func:`cqsm.lq.example`) with Gymnasium.
"""

from __future__ import annotations

import contextlib
import difflib
import os
import sys
import tempfile

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


# A notice MuJoCo 4 prints from C when it compiles the -v5 models (their XML still uses an old
# attribute); it says nothing about this project's runs, so make() keeps it off the terminal.
_KNOWN_C_NOTICES = ("compiler attribute 'settotalmass' is deprecated",)


@contextlib.contextmanager
def _without_known_c_notices():
    """Capture what C code writes to file descriptor 2, and pass on all but the known notices."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            text = captured.read().decode(errors="replace")
            kept = [
                line
                for line in text.splitlines()
                if line.strip() and not any(n in line for n in _KNOWN_C_NOTICES)
            ]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def make(env_id: str, **kwargs) -> gym.Env:
    """``gymnasium.make`` with an error that names the closest registered ids."""
    try:
        with _without_known_c_notices():
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
