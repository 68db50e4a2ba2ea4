"""The learned gains of a CQSM run on an LQ problem, as functions of time (chapter 5).

:func:`cqsm.lq_cqsm.offline_cqsm` and :func:`cqsm.lq_cqsm.online_cqsm` report errors, but not the
learned score itself, and chapter 5 draws the learned gain ``K_theta(t)`` over the whole horizon
against the Riccati gain. Both runs pass every score they report on to
:func:`cqsm.lq_cqsm.compare` (offline: the score of each round; online: a snapshot of each
recorded episode, then the final Polyak-averaged score), so :func:`with_gains` listens there while
the run lasts and keeps a frozen copy of each score's gain function. It runs the library's own
algorithm unchanged.

It belongs in :mod:`cqsm.lq_cqsm`: the runs could return the learned score (and critic) beside
their tables, and this module would go.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cqsm import lq_cqsm

__all__ = ["with_gains"]


def with_gains(
    run: Callable, *args, **kwargs
) -> tuple[object, list[Callable[[float], np.ndarray]]]:
    """Call ``run(*args, **kwargs)`` (``offline_cqsm`` or ``online_cqsm``); also return the gains.

    The second value lists ``t -> K_theta(t)`` for every score the run reported, in order: its
    last entry is the learned score (offline: the last round's; online: the averaged one).
    """
    if run not in (lq_cqsm.offline_cqsm, lq_cqsm.online_cqsm):
        raise ValueError("with_gains runs cqsm.lq_cqsm.offline_cqsm or cqsm.lq_cqsm.online_cqsm.")
    gains: list[Callable[[float], np.ndarray]] = []
    compare = lq_cqsm.compare

    def listening(prob, critic, phi, score, spread):
        gains.append(score.gain_function())
        return compare(prob, critic, phi, score, spread)

    lq_cqsm.compare = listening
    try:
        result = run(*args, **kwargs)
    finally:
        lq_cqsm.compare = compare
    return result, gains
