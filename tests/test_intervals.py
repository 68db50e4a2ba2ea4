"""The control-interval study in closed form (cqsm.lq.intervals), checked against independent
references: brute-force Bellman and Lyapunov recursions, an ODE for the second moments, Monte
Carlo of the SDE, and the limits as dt -> 0; and its learned counterpart against the fixed
points."""

import numpy as np
import pandas as pd
import pytest
import scipy.integrate
import scipy.optimize

from cqsm.lq.intervals import (
    DEFAULT_DTS,
    LABELS,
    LEARNED,
    METHODS,
    interval_gaps,
    interval_study,
    learned_interval_study,
    score_matching_fixed_point,
)
from cqsm.lq.problem import ConventionalLQ, LQError, LQProblem, example


@pytest.fixture(scope="module")
def prob():
    return example("scalar-discounted")


@pytest.fixture(scope="module")
def conv(prob):
    return ConventionalLQ.from_problem(prob)


@pytest.fixture(scope="module")
def study():
    return interval_study(dts=(0.0005,) + DEFAULT_DTS)


def rows(study, method):
    return study[study["method"] == method].sort_values("dt")


# --------------------------------------------------------------------------- (a) fixed points
def value_iteration(F, Bd, Q, R, gamma, n_iter=20000):
    """``P <- max_u`` of the one-step Bellman backup, by the Schur complement of the joint
    quadratic of ``(x, u)``, iterated from zero: ``(P, greedy gain)``."""
    P = np.zeros_like(Q)
    for _ in range(n_iter):
        H_xx = Q + gamma * F.T @ P @ F
        H_xu = gamma * F.T @ P @ Bd
        H_uu = R + gamma * Bd.T @ P @ Bd
        P_new = H_xx - H_xu @ np.linalg.solve(H_uu, H_xu.T)
        if np.abs(P_new - P).max() < 1e-15:
            break
        P = P_new
    return P_new, -np.linalg.solve(H_uu, H_xu.T)


def test_the_discrete_riccati_solutions_are_what_value_iteration_reaches(prob, conv):
    dt = 0.05
    gamma = np.exp(-prob.discount * dt)
    F, E = np.eye(prob.dim) + prob.calA * dt, prob.calE * dt
    P, K = value_iteration(F, E, prob.W * dt, prob.lam * dt * np.eye(prob.d), gamma)
    np.testing.assert_allclose(prob.discrete_time_P(dt), P, rtol=1e-10)
    np.testing.assert_allclose(prob.discrete_time_gain(dt), K, rtol=1e-10)
    for g in (0.99, np.exp(-conv.discount * dt)):
        S, L = value_iteration(np.eye(1) + conv.A * dt, conv.B * dt, conv.M * dt, conv.N * dt, g)
        np.testing.assert_allclose(conv.discrete_time_S(dt, g), S, rtol=1e-10)
        np.testing.assert_allclose(conv.discrete_time_gain(dt, g), L, rtol=1e-10)


def test_the_discrete_gain_is_the_argmax_of_the_one_step_q_function(prob):
    """Maximise ``(-1/2 z^T W z - lam/2 psi^2) dt + gamma E V(z')`` over ``psi`` numerically."""
    dt = 0.1
    gamma, P = np.exp(-prob.discount * dt), prob.discrete_time_P(dt)
    K = prob.discrete_time_gain(dt)
    F = np.eye(prob.dim) + prob.calA * dt
    for z in ([1.0, -0.5], [-0.3, 2.0]):
        z = np.array(z)

        def minus_q(psi, z=z):
            z1 = F @ z + prob.calE[:, 0] * psi * dt  # the mean of z'; the noise adds a constant
            return -(
                -0.5 * z @ prob.W @ z * dt
                - 0.5 * prob.lam * psi**2 * dt
                - 0.5 * gamma * z1 @ P @ z1
            )

        best = scipy.optimize.minimize_scalar(minus_q, bracket=(-5, 5), tol=1e-12).x
        assert best == pytest.approx((K @ z)[0], rel=1e-6)


def test_the_discrete_lyapunov_p_is_what_policy_evaluation_reaches(prob):
    dt = 0.05
    K = np.array([[-0.4, -0.8]])
    gamma = np.exp(-prob.discount * dt)
    F = np.eye(prob.dim) + (prob.calA + prob.calE @ K) * dt
    P = np.zeros((prob.dim, prob.dim))
    for _ in range(20000):
        P = (prob.W + prob.lam * K.T @ K) * dt + gamma * F.T @ P @ F
    np.testing.assert_allclose(prob.discrete_time_evaluate(K, dt), P, rtol=1e-10)
    K_fix = score_matching_fixed_point(prob, dt)
    np.testing.assert_allclose(
        K_fix, -(prob.calE.T @ prob.discrete_time_evaluate(K_fix, dt)) / prob.lam
    )


# --------------------------------------------------------------------------- (b) exact values
def moment_ode_value(closed, cost, noise_cov, beta, z0, T=48.0):
    """``E int_0^T e^{-beta t} (-1/2 z^T cost z) dt`` for ``dz = closed z dt + noise`` from
    ``z0``, by integrating the second moment ``C' = closed C + C closed^T + noise_cov``."""
    m = len(z0)

    def f(t, y):
        C = y[:-1].reshape(m, m)
        dC = closed @ C + C @ closed.T + noise_cov
        return np.concatenate([dC.ravel(), [-0.5 * np.exp(-beta * t) * np.trace(cost @ C)]])

    y0 = np.concatenate([np.outer(z0, z0).ravel(), [0.0]])
    sol = scipy.integrate.solve_ivp(f, (0, T), y0, method="DOP853", rtol=1e-11, atol=1e-13)
    return sol.y[-1, -1]


def test_exact_values_of_feedbacks_agree_with_the_moment_ode(prob, conv):
    K = conv.discrete_time_gain(0.002, 0.99)  # the short-horizon learner's gain
    x0 = np.array([1.0])
    ode = moment_ode_value(
        conv.A + conv.B @ K, conv.M + K.T @ conv.N @ K, conv.sigma_x @ conv.sigma_x.T, 0.5, x0
    )
    assert conv.evaluate(K).V(x0) == pytest.approx(ode, rel=1e-7)
    Kz = prob.discrete_time_gain(0.2)
    z0 = np.array([1.0, -0.5])
    closed, cost = prob.calA + prob.calE @ Kz, prob.W + prob.lam * Kz.T @ Kz
    ode = moment_ode_value(closed, cost, prob.noise_cov, prob.discount, z0)
    assert prob.evaluate(Kz).Q(None, z0) == pytest.approx(ode, rel=1e-7)


def test_the_exact_value_of_a_feedback_agrees_with_monte_carlo(conv):
    """Euler step 0.002 s, 4000 paths, 16 s (the discounted tail beyond is below 1e-4): the mean
    discounted return is within 4 standard errors plus 2e-3 (Euler bias) of ``V(x0)``, a
    tolerance well below the noise constant ``s`` (so a value without it would fail)."""
    K = conv.discrete_time_gain(0.002, 0.99)
    exact = conv.evaluate(K)
    rng = np.random.default_rng(0)
    h, n_paths, T, beta = 0.002, 4000, 16.0, conv.discount
    a_c, sig = (conv.A + conv.B @ K)[0, 0], conv.sigma_x[0, 0]
    cost = (conv.M + K.T @ conv.N @ K)[0, 0]
    x, ret = np.ones(n_paths), np.zeros(n_paths)
    for k in range(int(round(T / h))):
        ret += np.exp(-beta * k * h) * (-0.5 * cost * x**2) * h
        x = x + a_c * x * h + sig * np.sqrt(h) * rng.standard_normal(n_paths)
    se = ret.std() / np.sqrt(n_paths)
    tol = 4 * se + 2e-3
    assert tol < exact.s / 3
    assert ret.mean() == pytest.approx(exact.V(np.ones(1)), abs=tol)


# --------------------------------------------------------------------------- (c) dt -> 0
def test_cqsm_and_the_time_aware_learner_converge_as_dt_shrinks(study, prob):
    for method in ("cqsm", "cqsm score matching", "q-learning per second"):
        r = rows(study, method)
        gaps, errs = r["value gap"].to_numpy(), r["gain error"].to_numpy()
        assert np.all(np.diff(gaps) > 0), method  # the gap shrinks with dt ...
        assert gaps[0] < 1e-6, method  # ... to zero
        assert errs[0] < 1e-3 and errs[1] / errs[0] == pytest.approx(4, rel=0.05), method
        assert np.allclose(r["beta_eff"], prob.discount)
    K0 = rows(study, "cqsm")["gain"].iloc[0]
    np.testing.assert_allclose(K0, prob.optimal().gain(), rtol=1e-3)


def test_a_fixed_discount_per_step_loses_its_horizon_as_dt_shrinks(study):
    r = rows(study, "q-learning per step")
    assert np.allclose(r["horizon"], r["dt"] / 0.01, rtol=0.01)  # ~ dt / (1 - 0.99)
    small = r[r["dt"] <= 0.02]["value gap"].to_numpy()
    assert np.all(np.diff(small) < 0)  # below dt = 0.02 s the gap grows as dt shrinks
    assert small[0] > 0.5 and small[1] > 0.1  # 0.5 ms, 2 ms: far from the optimum
    # at dt = 0.02 s, gamma = 0.99 is e^{-beta dt} to 5e-5: the two learners nearly agree
    both = study[study["dt"] == 0.02].set_index("method")["value gap"]
    assert both["q-learning per step"] == pytest.approx(both["q-learning per second"], rel=0.1)


# --------------------------------------------------------------------------- (d) signs
def test_values_are_negative_and_the_optimum_is_best(study, prob, conv):
    assert list(study["method"].unique()) == list(METHODS)
    assert len(study) == len(METHODS) * (len(DEFAULT_DTS) + 1)
    assert study["stable"].all()
    assert (study["value"] < 0).all() and (study["optimal value"] < 0).all()
    assert (study["value gap"] >= 0).all() and (study["value"] <= study["optimal value"]).all()
    start = np.zeros(prob.dim), np.eye(prob.dim)
    best = prob.optimal().expected_value(*start)
    for dK in ([[0.1, 0]], [[0, -0.1]]):
        assert prob.evaluate(prob.optimal().gain() + np.array(dK)).expected_value(*start) < best
    best = conv.optimal().expected_value(np.zeros(1), np.eye(1))
    for dK in (0.1, -0.1):
        assert conv.evaluate(conv.optimal_gain() + dK).expected_value(np.zeros(1), np.eye(1)) < best


def test_a_destabilising_feedback_is_flagged_not_raised():
    """Unstable dynamics and a 0.2 s horizon: gamma = 0.99 at 2 ms barely controls, so the
    feedback does not stabilise the system at beta = 0.5; its value is -inf."""
    prob = LQProblem(1.0, 1.0, 0.3, 0.5, 1.0, 1.0, 0.0, None, 0.5, horizon=None, discount=0.5)
    with pytest.raises(LQError, match="does not stabilise"):
        ConventionalLQ.from_problem(prob).evaluate([[-0.3]])
    r = interval_study(prob, dts=(0.002, 0.02)).set_index(["method", "dt"])
    bad = r.loc[("q-learning per step", 0.002)]
    assert not bad["stable"] and bad["value"] == -np.inf and bad["value gap"] == np.inf
    assert r.drop(index=[("q-learning per step", 0.002)])["stable"].all()


def test_the_gap_table_has_a_row_per_interval_and_a_column_per_method(study):
    table = interval_gaps(study)
    assert list(table.columns) == ["horizon (s)"] + [LABELS[m] for m in METHODS]
    assert list(table.index) == sorted(study["dt"].unique())
    dt = 0.01
    per_step = rows(study, "q-learning per step").set_index("dt")
    assert table.loc[dt, "horizon (s)"] == per_step.loc[dt, "horizon"]
    assert table.loc[dt, "horizon (s)"] == pytest.approx(-dt / np.log(0.99))
    assert table.loc[dt, LABELS["cqsm"]] == rows(study, "cqsm").set_index("dt").loc[dt, "value gap"]
    only = interval_gaps(study[study["method"] == "cqsm"])
    assert list(only.columns) == [LABELS["cqsm"]]


# --------------------------------------------------------------------------- (e) learned
@pytest.fixture(scope="module")
def learned():
    """Enough data that the sampling error of a gain is about 0.015 (5 rounds, 16384 one-second
    episodes each), at two coarse intervals where the fixed points are far from the optimum."""
    return learned_interval_study(dts=(0.1, 0.2), seconds=1.0, n_paths=16384, n_iterations=5)


def gain_at(study, method, dt):
    return study.set_index(["method", "dt"]).loc[(method, dt), "gain"]


def test_learned_cqsm_reaches_the_q_score_matching_fixed_point(learned, prob):
    """Within 0.06 of ``score_matching_fixed_point``, and nearer it than the continuous-time
    optimum (0.11 away at 0.1 s, 0.28 at 0.2 s) or the discrete optimum."""
    for dt in (0.1, 0.2):
        K = gain_at(learned, "cqsm score matching", dt)
        fixed = score_matching_fixed_point(prob, dt)
        np.testing.assert_allclose(K, fixed, atol=0.06)
        for other in (prob.optimal().gain(), prob.discrete_time_gain(dt)):
            assert np.abs(K - fixed).max() < np.abs(K - other).max() / 2


def test_learned_q_learning_reaches_the_discrete_riccati_gain_of_its_discount(learned, conv):
    """At 0.2 s both discounts' fixed points are at least 0.13 from each other and from the
    continuous-time optimum; each learner lands within 0.06 of its own."""
    dt = 0.2
    own = {"q-learning per step": 0.99, "q-learning per second": np.exp(-conv.discount * dt)}
    for method, gamma in own.items():
        K = gain_at(learned, method, dt)
        fixed = conv.discrete_time_gain(dt, gamma)
        np.testing.assert_allclose(K, fixed, atol=0.06)
        others = [conv.optimal_gain()] + [
            conv.discrete_time_gain(dt, g) for g in own.values() if g != gamma
        ]
        for other in others:
            assert np.abs(K - fixed).max() < np.abs(K - other).max() / 2


def test_learned_rows_are_the_fixed_point_rows_format(learned):
    fixed = interval_study(dts=(0.1, 0.2))
    assert list(learned.columns) == list(fixed.columns)
    assert list(learned["method"].unique()) == list(LEARNED)
    assert (learned["source"] == "learned").all() and (fixed["source"] == "fixed point").all()
    assert learned["stable"].all() and (learned["value gap"] > 0).all()
    both = fixed.set_index(["method", "dt"]).loc[learned.set_index(["method", "dt"]).index]
    np.testing.assert_allclose(learned["gamma"], both["gamma"])
    np.testing.assert_allclose(learned["optimal value"], both["optimal value"])
    assert list(interval_gaps(learned).columns) == ["horizon (s)"] + [LABELS[m] for m in LEARNED]


def test_the_learned_study_is_deterministic_given_its_seed():
    """The same seed gives the same rows; another seed other gains; a cell's data do not depend
    on which other intervals the study holds."""
    size = {"seconds": 0.2, "n_paths": 32, "n_iterations": 2}
    one = learned_interval_study(dts=(0.02, 0.1), **size)
    pd.testing.assert_frame_equal(one, learned_interval_study(dts=(0.02, 0.1), **size))
    other = learned_interval_study(dts=(0.02, 0.1), seed=1, **size)
    flat = [np.concatenate([K.ravel() for K in s["gain"]]) for s in (one, other)]
    assert not np.allclose(*flat)
    alone = learned_interval_study(dts=(0.1,), **size).set_index(["method", "dt"])
    for key, row in alone.iterrows():
        np.testing.assert_array_equal(row["gain"], gain_at(one, *key))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dts": (0.0,)}, "dt must be a positive"),
        ({"dts": (-0.01,)}, "dt must be a positive"),
        ({"seconds": 0.0}, "seconds must be positive"),
        ({"n_paths": 0}, "n_paths must be positive"),
        ({"n_iterations": 2.5}, "must be whole"),
        ({"dts": (0.3,), "seconds": 1.0}, "whole number of steps"),
        ({"exploration": 0.0}, "exploration must be"),
        ({"gamma_per_step": 1.0}, "gamma_per_step"),
        ({"prob": example("scalar")}, "stationary"),
    ],
)
def test_the_learned_study_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LQError, match=match):
        learned_interval_study(**({"n_paths": 4, "n_iterations": 1} | kwargs))
