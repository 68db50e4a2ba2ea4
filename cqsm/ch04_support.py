"""The exact minimiser of the mean squared TD error over a critic linear in its parameters.

A companion of :func:`cqsm.martingale.fit_martingale_loss`: with ``delta_k`` affine in ``phi``,
``delta_k = u_k - phi . (f_k - e^{-beta dt} f_{k+1})``, the minimiser of ``E sum_k delta_k^2`` is a
least-squares fit. It is what gradient descent on the mean squared TD error converges to on a
fixed data set, which on these problems takes too many iterations to reach by descent. Chapter 4
uses it to show the objective's bias; it belongs beside ``fit_martingale_loss`` in
:mod:`cqsm.martingale`.
"""

from __future__ import annotations

import torch

from cqsm import martingale as mg
from cqsm.sde import Paths

__all__ = ["fit_mean_squared_td_error"]


def fit_mean_squared_td_error(critic, paths: Paths, ridge: float = 0.0) -> torch.Tensor:
    """The exact minimiser of ``E sum_k delta_k^2`` over a linear critic (a least-squares fit)."""
    f, b = mg._linear_parts(critic, paths)
    g = mg._discount_step(paths)
    u = g * b[:, 1:] - b[:, :-1] + paths.running_reward * paths.dt
    df = mg._flat(f[:, :-1] - g * f[:, 1:])
    return mg._solve(df.T @ df, df.T @ u.reshape(-1), ridge)
