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

:func:`learned_interval_study` reaches the three learners' fixed points from simulated data
alone, with the same budget in simulated seconds at every ``dt``, and evaluates the learned
policies in the same way (rows marked ``source = "learned"``): CQSM's loop with a TD(0) critic
(:func:`~cqsm.lq.martingale.solve_orthogonality`, unbiased on windows of a stationary problem)
and Q-score matching (:func:`learned_cqsm_gain`), and least-squares policy iteration (LSTD-Q)
on the conventional problem (:func:`learned_q_gain`). The conventional Q-function's dependence
on ``u`` is ``O(dt)`` (its ``u``-``u`` block is ``N dt + O(dt^2)``); CQSM's action is a state
variable, so its ``Q`` keeps its action dependence as ``dt -> 0``.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from cqsm.lq.critics import QuadraticCritic
from cqsm.lq.martingale import solve_orthogonality
from cqsm.lq.problem import ConventionalLQ, LQError, LQProblem, example
from cqsm.lq.score_matching import fit_linear_score
from cqsm.lq.scores import LinearScore
from cqsm.lq.sde import DTYPE, simulate

__all__ = [
    "DEFAULT_DTS",
    "METHODS",
    "LEARNED",
    "LABELS",
    "interval_study",
    "learned_interval_study",
    "learned_cqsm_gain",
    "learned_q_gain",
    "interval_gaps",
    "score_matching_fixed_point",
]

DEFAULT_DTS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
"""The control intervals (seconds) of the study: a log grid from 2 ms to 0.2 s."""

METHODS = ("cqsm", "cqsm score matching", "q-learning per step", "q-learning per second")
"""The methods of :func:`interval_study`, in the order of its rows."""

LEARNED = METHODS[1:]
"""The methods of :func:`learned_interval_study`: the learners (the discrete optimum is none)."""

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


def _check(prob: LQProblem | None, gamma_per_step: float, caller: str) -> LQProblem:
    prob = example("scalar-discounted") if prob is None else prob
    if not prob.stationary:
        raise LQError(f"{caller} needs a stationary (discounted) problem.")
    if not 0 < gamma_per_step < 1:
        raise LQError(f"gamma_per_step must be in (0, 1); got {gamma_per_step}.")
    return prob


def _discount(method: str, prob: LQProblem, dt: float, gamma_per_step: float) -> float:
    """The discount per step of ``method`` at ``dt``."""
    return gamma_per_step if method == "q-learning per step" else math.exp(-prob.discount * dt)


class _Rows:
    """The study's rows: a policy's exact continuous-time value beside its problem's optimum."""

    def __init__(self, prob: LQProblem, spread: float):
        self.prob, self.conv = prob, ConventionalLQ.from_problem(prob)
        self.start = {
            "augmented": (np.zeros(prob.dim), spread**2 * np.eye(prob.dim)),
            "conventional": (np.zeros(self.conv.n), spread**2 * np.eye(self.conv.n)),
        }
        self.optimum = {
            "augmented": (prob.optimal().gain(), self._optimal_value("augmented")),
            "conventional": (self.conv.optimal_gain(), self._optimal_value("conventional")),
        }

    def _optimal_value(self, problem: str) -> float:
        opt = self.prob.optimal() if problem == "augmented" else self.conv.optimal()
        return opt.expected_value(*self.start[problem])

    def value(self, problem: str, K: np.ndarray) -> float:
        if not np.all(np.isfinite(K)):
            return -math.inf  # no policy (a learned greedy step that has no maximiser)
        try:
            if problem == "augmented":
                return self.prob.evaluate(K).expected_value(*self.start[problem])
            return self.conv.evaluate(K).expected_value(*self.start[problem])
        except LQError:
            return -math.inf  # the policy does not stabilise the discounted system

    def row(self, method: str, dt: float, gamma: float, K: np.ndarray, source: str) -> dict:
        problem = "augmented" if method.startswith("cqsm") else "conventional"
        K_opt, v_opt = self.optimum[problem]
        v = self.value(problem, K)
        beta_eff = -math.log(gamma) / dt
        return {
            "method": method,
            "source": source,
            "problem": problem,
            "dt": dt,
            "gamma": gamma,
            "beta_eff": beta_eff,
            "horizon": 1 / beta_eff,
            "beta": self.prob.discount,
            "gain": K,
            **_gain_columns(K),
            "gain error": float(np.linalg.norm(K - K_opt) / np.linalg.norm(K_opt)),
            "stable": math.isfinite(v),
            "value": v,
            "optimal value": v_opt,
            "value gap": (v_opt - v) / abs(v_opt),
        }


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

    - ``method``, ``source`` (``"fixed point"``; :func:`learned_interval_study`'s rows say
      ``"learned"``), ``problem`` (``"augmented"`` or ``"conventional"``), ``dt``;
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
    prob = _check(prob, gamma_per_step, "interval_study")
    table = _Rows(prob, spread)
    conv = table.conv
    rows = []
    for method in METHODS:
        for dt in dts:
            dt = float(dt)
            gamma = _discount(method, prob, dt, gamma_per_step)
            if method == "cqsm":
                K = prob.discrete_time_gain(dt)
            elif method == "cqsm score matching":
                K = score_matching_fixed_point(prob, dt)
            else:
                K = conv.discrete_time_gain(dt, gamma)
            rows.append(table.row(method, dt, gamma, K, "fixed point"))
    return pd.DataFrame(rows)


def _seed(seed: int, method: str, dt: float) -> torch.Generator:
    """A generator per ``(seed, method, dt)``: a cell's data do not depend on the other cells."""
    key = [seed, METHODS.index(method), round(dt * 1e9)]
    return torch.Generator().manual_seed(int(np.random.SeedSequence(key).generate_state(1)[0]))


def _steps(dt: float, seconds: float) -> int:
    if not math.isfinite(dt) or dt <= 0:
        raise LQError(f"dt must be a positive number of seconds; got {dt}.")
    n_steps = seconds / dt
    if round(n_steps) < 1 or abs(n_steps - round(n_steps)) > 1e-6 * n_steps:
        raise LQError(
            f"seconds / dt = {seconds:g} / {dt:g} = {n_steps:.6g} must be a whole number of "
            "steps; choose episodes a whole number of intervals long."
        )
    return round(n_steps)


def learned_cqsm_gain(
    prob: LQProblem,
    dt: float,
    n_steps: int,
    n_paths: int,
    n_iterations: int,
    spread: float,
    generator: torch.Generator,
    K0=None,
) -> np.ndarray:
    """CQSM's loop from data at step ``dt``: the gain after ``n_iterations`` rounds.

    Each round simulates ``n_paths`` episodes of ``n_steps`` Euler steps under the current
    constant-gain score (from ``z_0 ~ N(0, spread^2 I)``), fits the quadratic critic by TD(0)
    (:func:`~cqsm.lq.martingale.solve_orthogonality`) and improves the score by Q-score
    matching (:func:`~cqsm.lq.score_matching.fit_linear_score`). It starts from ``K0``, by
    default ``Psi = -a`` (the action relaxes to zero in one second; chapter 5's planar start).
    Not from ``Psi = 0``: there the action is a random walk, the first greedy step is steep
    (``Psi = -1.5 x - 7 a`` on the default problem), and at ``dt = 0.2`` s exact iteration
    leaves the stable set in its second round (the continuous-time greedy step is not an
    improvement guaranteed on the Euler chain).
    """
    sde, critic = prob.sde(), QuadraticCritic.for_problem(prob)
    if K0 is None:
        K0 = np.hstack([np.zeros((prob.d, prob.n)), -np.eye(prob.d)])
    score = LinearScore.for_problem(prob, K0=K0)
    for _ in range(n_iterations):
        z0 = spread * torch.randn(n_paths, prob.dim, generator=generator, dtype=DTYPE)
        paths = simulate(sde, score, z0, dt, n_steps=n_steps, generator=generator)
        with torch.no_grad():
            critic.phi.copy_(solve_orthogonality(critic, paths))
        fit_linear_score(score, critic, paths, prob.lam)
    return score.gain()


def learned_q_gain(
    conv: ConventionalLQ,
    dt: float,
    gamma: float,
    n_steps: int,
    n_paths: int,
    n_iterations: int,
    exploration: float,
    spread: float,
    generator: torch.Generator,
    K0=None,
) -> np.ndarray:
    """Least-squares policy iteration (LSTD-Q) on the Euler-sampled conventional problem.

    Each round simulates ``n_paths`` episodes of ``n_steps`` steps from ``x_0 ~ N(0, spread^2
    I)`` under the behaviour ``u_k = K x_k + e_k``, ``e_k ~ N(0, exploration^2 I)`` drawn
    afresh at every step (a fixed standard deviation per step, whatever ``dt``), with
    ``x' = x + (A x + B u) dt + sigma_x sqrt(dt) eps`` and reward ``-1/2 (x^T M x + u^T N u)
    dt``. It fits ``Q(x, u) = -1/2 (x, u)^T H (x, u) - h`` of the target policy ``u = K x`` by
    LSTD-Q (``E f_k (r_k + gamma Q(x_{k+1}, K x_{k+1}) - Q(x_k, u_k)) = 0``, ``f`` the
    features of ``Q``) and takes the greedy gain ``K = -H_uu^{-1} H_ux``. It starts from
    ``K0``, by default ``u = 0``. When a fitted ``H_uu`` is not positive definite the greedy
    step has no maximiser and the gain is NaN.
    """
    n, d = conv.n, conv.d
    critic = QuadraticCritic(n, d, horizon=None)  # the quadratic family in y = (x, u)
    A, B, sig, M, N = (torch.as_tensor(m) for m in (conv.A, conv.B, conv.sigma_x, conv.M, conv.N))
    K = np.zeros((d, n)) if K0 is None else np.asarray(K0, dtype=float)
    for _ in range(n_iterations):
        Kt = torch.as_tensor(K)
        x = spread * torch.randn(n_paths, n, generator=generator, dtype=DTYPE)
        eps = torch.randn(n_steps, n_paths, n, generator=generator, dtype=DTYPE)
        e = exploration * torch.randn(n_steps, n_paths, d, generator=generator, dtype=DTYPE)
        closed, drive = (A + B @ Kt) * dt, B * dt
        noise = math.sqrt(dt) * eps @ sig.T + e @ drive.T
        xs = [x]
        for k in range(n_steps):  # x' = x + (A x + B (K x + e)) dt + sigma_x sqrt(dt) eps
            x = x + x @ closed.T + noise[k]
            xs.append(x)
        xs = torch.stack(xs)  # (n_steps + 1, n_paths, n)
        u = xs[:-1] @ Kt.T + e
        r = -0.5 * (((xs[:-1] @ M) * xs[:-1]).sum(-1) + ((u @ N) * u).sum(-1)) * dt
        f = critic.features(0.0, torch.cat([xs[:-1], u], -1)).reshape(-1, critic.phi.numel())
        f_next = critic.features(0.0, torch.cat([xs[1:], xs[1:] @ Kt.T], -1))
        df = f - gamma * f_next.reshape(f.shape)
        w = np.linalg.solve((f.T @ df).numpy(), (f.T @ r.reshape(-1)).numpy())
        H = critic.P(phi=torch.from_numpy(w))
        H_uu, H_ux = H[n:, n:], H[n:, :n]
        if np.linalg.eigvalsh(H_uu).min() <= 0:
            return np.full((d, n), np.nan)
        K = -np.linalg.solve(H_uu, H_ux)
    return K


def learned_interval_study(
    prob: LQProblem | None = None,
    dts=DEFAULT_DTS,
    gamma_per_step: float = 0.99,
    seconds: float = 1.0,
    n_paths: int = 2048,
    n_iterations: int = 6,
    exploration: float = 0.5,
    seed: int = 0,
    spread: float = 1.0,
) -> pd.DataFrame:
    """What each learner reaches from simulated data at each ``dt``, and its exact value.

    The learned counterparts of :func:`interval_study`'s fixed points, for the methods of
    :data:`LEARNED`: ``n_iterations`` rounds of policy iteration, each on ``n_paths`` fresh
    episodes of ``seconds`` simulated seconds (``seconds / dt`` steps, a whole number: the same
    budget in simulated time, ``n_paths * seconds`` per round, at every ``dt``), episodes
    starting from the values' start law ``N(0, spread^2 I)``.

    - ``cqsm score matching``: :func:`learned_cqsm_gain` (TD(0) critic, Q-score matching);
      its expectation is :func:`score_matching_fixed_point`;
    - ``q-learning per step`` / ``per second``: :func:`learned_q_gain` (LSTD-Q, greedy step)
      with ``gamma_per_step`` or ``e^{-beta dt}``, behaviour noise of standard deviation
      ``exploration`` (action units) drawn afresh at every step, as practitioners draw it
      (0.5: on the default problem about a third of the optimal control's spread, 1.6, at
      the start law); its expectation is :meth:`ConventionalLQ.discrete_time_gain`.

    The defaults are chapter 9's book size (2048 s of data per round; a gain's sampling error
    is then a few hundredths on the default problem, whatever ``dt``). The rows are
    :func:`interval_study`'s, with ``source = "learned"``; a learned policy that does not
    stabilise the system (or has no greedy maximiser) has value ``-inf``. Each
    ``(method, dt)`` draws its own data from ``seed``: the same seed gives the same rows, and
    a cell's rows do not depend on the other intervals in ``dts``.
    """
    prob = _check(prob, gamma_per_step, "learned_interval_study")
    for name, v in (("seconds", seconds), ("n_paths", n_paths), ("n_iterations", n_iterations)):
        if not (math.isfinite(v) and v > 0):
            raise LQError(f"{name} must be positive; got {v}.")
    if int(n_paths) != n_paths or int(n_iterations) != n_iterations:
        raise LQError(f"n_paths and n_iterations must be whole; got {n_paths}, {n_iterations}.")
    if not (math.isfinite(exploration) and exploration > 0):
        raise LQError(f"exploration must be a positive standard deviation; got {exploration}.")
    steps = {float(dt): _steps(float(dt), seconds) for dt in dts}
    table = _Rows(prob, spread)
    conv = table.conv
    budget = {"n_paths": int(n_paths), "n_iterations": int(n_iterations), "spread": spread}
    rows = []
    for method in LEARNED:
        for dt, n_steps in steps.items():
            gen = _seed(seed, method, dt)
            gamma = _discount(method, prob, dt, gamma_per_step)
            if method == "cqsm score matching":
                K = learned_cqsm_gain(prob, dt, n_steps, generator=gen, **budget)
            else:
                K = learned_q_gain(
                    conv, dt, gamma, n_steps, exploration=exploration, generator=gen, **budget
                )
            rows.append(table.row(method, dt, gamma, K, "learned"))
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
