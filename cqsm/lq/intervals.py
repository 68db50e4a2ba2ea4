"""The control interval, exactly: what each method converges to when it learns at step ``dt``.

A discrete-time learner with a discount ``gamma`` per step looks ``1 / (-log gamma / dt)``
seconds ahead: with ``gamma = 0.99`` that is ``dt / 0.01`` seconds (about 100 steps), so its
horizon shrinks with the control interval. A continuous-time method discounts at a rate ``beta``
per second (``gamma = e^{-beta dt}``) and prices action speed in physical units (``lam``), so
its problem does not change with ``dt``. On a stationary discounted LQ problem (by default
``example("scalar-discounted")``: ``beta = 0.5`` per second, ``lam = 0.5``) each learner's fixed
point is known in closed form, and so is the exact continuous-time value of the policy it
converges to. :func:`interval_study` tabulates both for four methods at every ``dt``:

``cqsm``
    The optimum of the Euler-discretised *augmented* problem (state ``z = (x, a)``, the score
    ``Psi`` drives the action) with discount ``e^{-beta dt}`` per step: the discrete Riccati
    solution :meth:`LQProblem.discrete_time_P` and its greedy score ``Psi = K_dt z``, the exact
    argmax of the discrete Q-function (:meth:`LQProblem.discrete_time_gain`). It tends to the
    continuous-time ``K = -(1/lam) calE^T P`` as ``dt -> 0``.
``cqsm score matching``
    The fixed point of CQSM's own loop at step ``dt``: the critic is the discrete-time Q of the
    current score on the Euler chain (what a TD(0)/LSTD critic of the quadratic family converges
    to, :meth:`LQProblem.discrete_time_evaluate`), and the score is improved by Q-score matching,
    ``K <- -(1/lam) calE^T P_K``, the continuous-time greedy step, not the discrete argmax.
``q-learning per step``
    Conventional Q-learning, the control ``u`` entering the dynamics directly
    (:class:`ConventionalLQ` with the same ``A, B, sigma_x, M, N`` and ``beta``), on the
    Euler-sampled system ``x' = x + (A x + B u) dt + sigma_x sqrt(dt) eps`` with reward
    ``-1/2 (x^T M x + u^T N u) dt`` and a fixed discount ``gamma_per_step`` (0.99) per step. Its
    fixed point is a discrete Riccati solution; the policy is ``u = K_dt x``
    (:meth:`ConventionalLQ.discrete_time_gain`).
``q-learning per second``
    The same learner, time-aware: ``gamma = e^{-beta dt}``.

Every policy is then evaluated *exactly in continuous time* on the problem its method is posed
on, and compared with that problem's exact optimum: the augmented problem
(:meth:`LQProblem.evaluate` against :meth:`LQProblem.optimal`; reward
``-1/2 z^T W z - lam/2 |Psi|^2`` with ``W = [[M, R], [R^T, N]]``, so the cross term ``R`` and
the price ``lam`` count) or the conventional one (:meth:`ConventionalLQ.evaluate` against
:meth:`ConventionalLQ.optimal`; reward ``-1/2 (x^T M x + u^T N u)``, no ``R``). The value is the
expected objective from a fixed start law, ``z_0 ~ N(0, spread^2 I)`` (augmented) or
``x_0 ~ N(0, spread^2 I)`` (conventional), noise constant included. Gaps are therefore relative
to each problem's own optimum; the two problems' values are not compared with each other.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cqsm.lq.problem import ConventionalLQ, LQError, LQProblem, example

__all__ = [
    "DEFAULT_DTS",
    "METHODS",
    "LABELS",
    "interval_study",
    "interval_gaps",
    "score_matching_fixed_point",
]

DEFAULT_DTS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
"""The control intervals (seconds) of the study: a log grid from 2 ms to 0.2 s."""

METHODS = ("cqsm", "cqsm score matching", "q-learning per step", "q-learning per second")
"""The methods of :func:`interval_study`, in the order of its rows."""

LABELS = {
    "cqsm": "CQSM (discrete optimum)",
    "cqsm score matching": "CQSM, Q-score matching",
    "q-learning per step": "Q-learning, γ = 0.99 per step",
    "q-learning per second": "Q-learning, γ = e^(−βΔt)",
}
"""How each method is named in the book's figures and tables."""


def score_matching_fixed_point(
    prob: LQProblem, dt: float, n_iter: int = 100, tol: float = 1e-13
) -> np.ndarray:
    """The gain ``K`` with ``K = -(1/lam) calE^T P_K``, ``P_K`` the discrete-time Q of ``K``.

    Policy iteration at step ``dt``: evaluate on the Euler chain
    (:meth:`LQProblem.discrete_time_evaluate`), improve by Q-score matching; started from the
    continuous-time optimum, which is ``O(dt)`` from the fixed point. Raises :class:`LQError`
    if the iteration does not settle within ``n_iter`` rounds.
    """
    K = prob.optimal().gain()
    for _ in range(n_iter):
        K_new = -(prob.calE.T @ prob.discrete_time_evaluate(K, dt)) / prob.lam
        if np.abs(K_new - K).max() <= tol * max(1.0, np.abs(K).max()):
            return K_new
        K = K_new
    raise LQError(f"Q-score-matching policy iteration did not converge at dt = {dt}.")


def _gain_columns(K: np.ndarray) -> dict:
    return {f"K[{i},{j}]": K[i, j] for i in range(K.shape[0]) for j in range(K.shape[1])}


def interval_study(
    prob: LQProblem | None = None,
    dts=DEFAULT_DTS,
    gamma_per_step: float = 0.99,
    spread: float = 1.0,
) -> pd.DataFrame:
    """Each method's fixed point at each control interval ``dt``, and its exact value.

    ``prob`` is a stationary :class:`LQProblem` (default ``example("scalar-discounted")``);
    ``dts`` the intervals in seconds; ``gamma_per_step`` the fixed discount of the
    ``q-learning per step`` learner; ``spread`` the start law ``N(0, spread^2 I)`` of the values.

    One tidy row per ``(method, dt)`` (methods in the order of :data:`METHODS`):

    - ``method``, ``problem`` (``"augmented"`` or ``"conventional"``), ``dt``;
    - ``gamma``: the discount per step, ``beta_eff = -log(gamma) / dt`` the rate per second it
      amounts to, ``horizon = 1 / beta_eff`` (seconds), ``beta`` the problem's own rate;
    - ``gain``: the learned gain as an array (``Psi = K z`` on the augmented problem, ``u = K x``
      on the conventional one), its entries ``K[i,j]``, and ``gain error``
      ``|K - K*| / |K*|`` (Frobenius) against the continuous-time optimal gain;
    - ``stable``: whether the policy stabilises the discounted continuous-time system;
      ``value``: its exact expected objective (``-inf`` when not stable), ``optimal value`` the
      problem's optimum, and ``value gap`` ``(optimal value - value) / |optimal value|`` (0 at
      the optimum, ``inf`` when not stable).
    """
    prob = example("scalar-discounted") if prob is None else prob
    if not prob.stationary:
        raise LQError("interval_study needs a stationary (discounted) problem.")
    if not 0 < gamma_per_step < 1:
        raise LQError(f"gamma_per_step must be in (0, 1); got {gamma_per_step}.")
    conv = ConventionalLQ.from_problem(prob)
    beta = prob.discount
    start = {
        "augmented": (np.zeros(prob.dim), spread**2 * np.eye(prob.dim)),
        "conventional": (np.zeros(conv.n), spread**2 * np.eye(conv.n)),
    }
    optimum = {
        "augmented": (prob.optimal().gain(), prob.optimal().expected_value(*start["augmented"])),
        "conventional": (
            conv.optimal_gain(),
            conv.optimal().expected_value(*start["conventional"]),
        ),
    }

    def value(problem: str, K: np.ndarray) -> float:
        try:
            if problem == "augmented":
                return prob.evaluate(K).expected_value(*start[problem])
            return conv.evaluate(K).expected_value(*start[problem])
        except LQError:
            return -math.inf  # the policy does not stabilise the discounted system

    rows = []
    for method in METHODS:
        for dt in dts:
            dt = float(dt)
            own = math.exp(-beta * dt)
            if method == "cqsm":
                problem, gamma, K = "augmented", own, prob.discrete_time_gain(dt)
            elif method == "cqsm score matching":
                problem, gamma, K = "augmented", own, score_matching_fixed_point(prob, dt)
            elif method == "q-learning per step":
                gamma = gamma_per_step
                problem, K = "conventional", conv.discrete_time_gain(dt, gamma)
            else:
                problem, gamma, K = "conventional", own, conv.discrete_time_gain(dt, own)
            K_opt, v_opt = optimum[problem]
            v = value(problem, K)
            beta_eff = -math.log(gamma) / dt
            rows.append(
                {
                    "method": method,
                    "problem": problem,
                    "dt": dt,
                    "gamma": gamma,
                    "beta_eff": beta_eff,
                    "horizon": 1 / beta_eff,
                    "beta": beta,
                    "gain": K,
                    **_gain_columns(K),
                    "gain error": float(np.linalg.norm(K - K_opt) / np.linalg.norm(K_opt)),
                    "stable": math.isfinite(v),
                    "value": v,
                    "optimal value": v_opt,
                    "value gap": (v_opt - v) / abs(v_opt),
                }
            )
    return pd.DataFrame(rows)


def interval_gaps(study: pd.DataFrame) -> pd.DataFrame:
    """:func:`interval_study`'s value gaps as a table: one row per ``dt`` (seconds, ascending),
    ``horizon (s)`` the horizon ``1 / beta_eff`` of the ``q-learning per step`` learner (where
    the study has it), then each method's ``value gap`` under its display name
    (:data:`LABELS`), in the order of :data:`METHODS`."""
    gaps = study.pivot(index="dt", columns="method", values="value gap")
    methods = [m for m in METHODS if m in gaps.columns]
    table = gaps[methods].rename(columns=LABELS).sort_index()
    per_step = study[study["method"] == "q-learning per step"].set_index("dt")["horizon"]
    if len(per_step):
        table.insert(0, "horizon (s)", per_step.reindex(table.index))
    return table.rename_axis(index="dt", columns=None)
