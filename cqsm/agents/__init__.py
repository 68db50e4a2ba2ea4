"""Deep agents on the shared training loop of :mod:`cqsm.train`.

Each algorithm is one module holding its settings dataclass and its agent class (see
:class:`cqsm.agents.common.Agent` for the interface): :mod:`cqsm.agents.cqsm` so far.
"""

from __future__ import annotations

from cqsm.agents.cqsm import CQSMAgent, CQSMSettings
from cqsm.settings import SettingsError

__all__ = ["ALGOS", "agent_class", "CQSMAgent", "CQSMSettings"]

ALGOS = {"cqsm": CQSMAgent}


def agent_class(algo: str):
    """The agent class of an algorithm name, with an error that lists the known ones."""
    try:
        return ALGOS[algo]
    except KeyError:
        raise SettingsError(f"Unknown algorithm {algo!r}; choose one of {sorted(ALGOS)}.") from None
