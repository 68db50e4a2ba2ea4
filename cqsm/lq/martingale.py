"""Policy evaluation by the martingale characterisation of the Q-function.

``Q`` is the Q-function of a score ``Psi`` iff ``Q(T, .) = h`` and

    M_s = e^{-beta s} Q(s, X_s, a_s) + int_0^s e^{-beta u} (r - (lam/2)|Psi|^2) du

is a martingale. On a grid of step ``dt`` its increments are the martingale (TD) errors

    delta_k = e^{-beta dt} Q(t_{k+1}, z_{k+1}) - Q(t_k, z_k) + (r_k - (lam/2)|Psi_k|^2) dt.

Three ways to use it, for any critic (quadratic LQ family or torch MLP):

* the **martingale loss** ``ML = 1/2 E sum_k e^{-2 beta t_k} |G_k - Q(t_k, z_k)|^2 dt``, with
  ``G_k``
  the realised return to go (offline, Monte-Carlo type);
* the **orthogonality conditions** ``E sum_k xi_k delta_k = 0`` for test functions ``xi``:
  ``xi = dQ/dphi`` is continuous TD(0); the eligibility trace
  ``xi_k = sum_{j<=k} kappa^{k-j} dQ_j/dphi``, ``kappa = e^{-(beta + eta) dt}``, is TD(lambda) with
  trace decay rate ``eta`` (``eta = 0`` recovers the martingale loss's gradient); for a critic that
  is linear in ``phi`` the conditions are linear equations, solved directly (LSTD type);
* the **mean squared TD error** ``E sum_k delta_k^2``: *not* a valid objective (its minimum is
  biased
  by the quadratic variation of ``M``), kept to show why.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from cqsm.lq.sde import Paths, accumulate, returns_to_go, trace_sums

__all__ = [
    "critic_on_grid",
    "martingale_increments",
    "martingale_process",
    "martingale_loss",
    "mean_squared_td_error",
    "orthogonality_surrogate",
    "fit_martingale_loss",
    "solve_orthogonality",
    "fit_mean_squared_td_error",
    "trace_factor",
    "trace_decay",
]


def critic_on_grid(critic, paths: Paths) -> torch.Tensor:
    """``Q_phi(t_k, z_k)`` on every grid point, shape ``(N, K+1)``; ``Q(T, .) = h`` imposed."""
    q = critic(paths.t, paths.x, paths.a)
    if paths.finite_horizon:
        q = torch.cat([q[:, :-1], paths.terminal[:, None].to(q.dtype)], 1)
    return q


def _discount_step(paths: Paths) -> float:
    return math.exp(-paths.discount * paths.dt)


def _discounts(paths: Paths) -> torch.Tensor:
    """``e^{-beta (t_k - t_0)}`` at the left end of each interval, shape ``(K,)``."""
    return torch.exp(-paths.discount * (paths.t[:-1] - paths.t[0]))


def martingale_increments(q: torch.Tensor, paths: Paths) -> torch.Tensor:
    """``delta_k`` for critic values ``q (N, K+1)`` on the grid, shape ``(N, K)``."""
    return _discount_step(paths) * q[:, 1:] - q[:, :-1] + paths.running_reward * paths.dt


def _time_weights(paths: Paths) -> torch.Tensor:
    return _discounts(paths) ** 2


def martingale_process(q: torch.Tensor, paths: Paths) -> torch.Tensor:
    """``M_{t_k} - M_{t_0}`` on the grid for critic values ``q (N, K+1)``, shape ``(N, K+1)``.

    ``M_t = e^{-beta t} Q(t, z_t) + int_0^t e^{-beta u} (r - lam/2 |Psi|^2) du``: flat in mean if
    and only if ``q`` is the Q-function of the score that generated ``paths``.
    """
    increments = _discounts(paths) * martingale_increments(q, paths)
    return torch.cat([torch.zeros_like(q[:, :1]), increments.cumsum(1)], 1)


def martingale_loss(q: torch.Tensor, paths: Paths) -> torch.Tensor:
    """``1/2 E sum_k e^{-2 beta t_k} |G_k - q_k|^2 dt`` (mean over paths)."""
    resid = returns_to_go(paths)[:, :-1] - q[:, :-1]
    return 0.5 * (resid**2 * _time_weights(paths)).sum(1).mean() * paths.dt


def mean_squared_td_error(q: torch.Tensor, paths: Paths) -> torch.Tensor:
    """``E sum_k delta_k^2``: its minimiser is biased (it also measures ``d<M>``)."""
    return (martingale_increments(q, paths) ** 2).sum(1).mean()


def trace_factor(paths: Paths, trace_rate: float | None) -> float:
    """``kappa = e^{-(beta + eta) dt}``; ``trace_rate=None`` (``eta = inf``) gives TD(0)."""
    return trace_decay(paths.discount, paths.dt, trace_rate)


def trace_decay(discount: float, dt: float, trace_rate: float | None) -> float:
    """``kappa = e^{-(beta + eta) dt}`` from the rates themselves (see :func:`trace_factor`)."""
    if trace_rate is None:
        return 0.0
    if trace_rate < 0:
        raise ValueError(f"trace_rate eta must be >= 0 per unit time; got {trace_rate}.")
    return math.exp(-(discount + trace_rate) * dt)


def orthogonality_surrogate(
    q: torch.Tensor, paths: Paths, trace_rate: float | None = None
) -> torch.Tensor:
    """A scalar whose gradient is ``-E sum_k xi_k delta_k`` (the orthogonality residual).

    Gradient *descent* on it moves ``phi`` along ``sum_k xi_k delta_k``: TD(0) for
    ``trace_rate=None``, TD(lambda) with decay rate ``eta = trace_rate`` otherwise.
    """
    delta = martingale_increments(q.detach(), paths)
    weights = trace_sums(delta, trace_factor(paths, trace_rate))
    return -(q[:, :-1] * weights).sum(1).mean()


# ----------------------------------------------------------------- critics linear in phi
def _linear_parts(critic, paths: Paths):
    """Features ``f (N, K+1, p)`` and base values ``b (N, K+1)`` with ``Q = b + f . phi``."""
    z = paths.z
    f, b = critic.features(paths.t, z), critic.base(paths.t, z)
    if paths.finite_horizon:  # Q(T, .) = h exactly: zero features at the horizon
        f = torch.cat([f[:, :-1], torch.zeros_like(f[:, -1:])], 1)
        b = torch.cat([b[:, :-1], paths.terminal[:, None]], 1)
    return f, b


def fit_martingale_loss(critic, paths: Paths, ridge: float = 0.0) -> torch.Tensor:
    """The exact minimiser of the martingale loss over a linear critic (a least-squares fit)."""

    def moments(chunk):
        f, b = _linear_parts(critic, chunk)
        X = f[:, :-1]
        Xw = _flat(X * _time_weights(chunk)[None, :, None])
        return Xw.T @ _flat(X), Xw.T @ (returns_to_go(chunk) - b)[:, :-1].reshape(-1)

    return _solve(*accumulate(moments, paths), ridge)


def solve_orthogonality(
    critic, paths: Paths, trace_rate: float | None = None, ridge: float = 0.0
) -> torch.Tensor:
    """Solve ``sum_k xi_k delta_k(phi) = 0`` for a linear critic (LSTD / LSTD(lambda) type).

    ``delta_k`` is affine in ``phi``: ``delta_k = u_k - phi . (f_k - e^{-beta dt} f_{k+1})``.
    """

    def moments(chunk):
        f, u, df = _affine_increments(critic, chunk)
        xi = _flat(_eligibility_traces(f[:, :-1], trace_factor(chunk, trace_rate)))
        return xi.T @ _flat(df), xi.T @ u.reshape(-1)

    return _solve(*accumulate(moments, paths), ridge)


def fit_mean_squared_td_error(critic, paths: Paths, ridge: float = 0.0) -> torch.Tensor:
    """The exact minimiser of ``E sum_k delta_k^2`` over a linear critic (least squares).

    What gradient descent on the mean squared TD error converges to on a fixed data set; it is
    biased (see the module docstring), which chapter 4 shows.
    """

    def moments(chunk):
        _, u, df = _affine_increments(critic, chunk)
        return _flat(df).T @ _flat(df), _flat(df).T @ u.reshape(-1)

    return _solve(*accumulate(moments, paths), ridge)


def _affine_increments(critic, paths: Paths):
    """Features ``f`` and ``delta_k = u_k - phi . df_k`` for a linear critic: ``(f, u, df)``."""
    f, b = _linear_parts(critic, paths)
    g = _discount_step(paths)
    u = g * b[:, 1:] - b[:, :-1] + paths.running_reward * paths.dt
    return f, u, f[:, :-1] - g * f[:, 1:]


def _eligibility_traces(grads: torch.Tensor, kappa: float) -> torch.Tensor:
    """``xi_k = sum_{j<=k} kappa^{k-j} g_j`` along the time axis (dim 1)."""
    if kappa == 0.0:
        return grads
    return trace_sums(grads.flip(1), kappa).flip(1)


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _solve(lhs: torch.Tensor, rhs: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
    """Solve the small moment equations (in numpy: bitwise reproducible, unlike MKL's lstsq)."""
    lhs = lhs.numpy() + ridge * np.eye(len(lhs))
    try:
        sol = np.linalg.solve(lhs, rhs.numpy())
    except np.linalg.LinAlgError:
        sol = np.full(len(lhs), np.nan)
    if not np.all(np.isfinite(sol)) or np.linalg.cond(lhs) > 1e14:
        raise FloatingPointError(
            "The moment equations are singular: the data do not excite every feature. "
            "Simulate more paths or spread the initial states."
        )
    return torch.from_numpy(sol)
