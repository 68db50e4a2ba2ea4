"""Deep agents on the shared training loop of :mod:`cqsm.rl.train`.

Each algorithm is one module holding its settings dataclass and its agent class (see
:class:`cqsm.rl.agents.common.Agent` for the interface): :mod:`cqsm.rl.agents.cqsm`, and the
baselines :mod:`cqsm.rl.agents.td3`, :mod:`cqsm.rl.agents.sac`,
:mod:`cqsm.rl.agents.diffusion_ql` and :mod:`cqsm.rl.agents.qsm`. An agent class may carry
``TRAIN_DEFAULTS``: the loop settings its published defaults fix (for example its warm-up),
applied before the task's row of :data:`cqsm.rl.presets.TASKS`.
"""

from __future__ import annotations

from cqsm.rl.agents.cqsm import CQSMAgent, CQSMSettings
from cqsm.rl.agents.diffusion_ql import DiffusionQLAgent, DiffusionQLSettings
from cqsm.rl.agents.qsm import QSMAgent, QSMSettings
from cqsm.rl.agents.sac import SACAgent, SACSettings
from cqsm.rl.agents.td3 import TD3Agent, TD3Settings
from cqsm.settings import SettingsError

__all__ = [
    "ALGOS",
    "agent_class",
    "CQSMAgent",
    "CQSMSettings",
    "TD3Agent",
    "TD3Settings",
    "SACAgent",
    "SACSettings",
    "DiffusionQLAgent",
    "DiffusionQLSettings",
    "QSMAgent",
    "QSMSettings",
]

ALGOS = {
    "cqsm": CQSMAgent,
    "td3": TD3Agent,
    "sac": SACAgent,
    "diffusion_ql": DiffusionQLAgent,
    "qsm": QSMAgent,
}


def agent_class(algo: str):
    """The agent class of an algorithm name, with an error that lists the known ones."""
    try:
        return ALGOS[algo]
    except KeyError:
        raise SettingsError(f"Unknown algorithm {algo!r}; choose one of {sorted(ALGOS)}.") from None
