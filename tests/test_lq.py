"""LQ closed forms against independent references: matrix exponentials, scipy, Monte Carlo."""

import numpy as np
import pytest
import scipy.linalg
import torch

from cqsm.lq.problem import ConventionalLQ, LQError, LQProblem, example
from cqsm.lq.scores import LinearScore
from cqsm.lq.sde import simulate

TIMES = [0.0, 0.25, 0.5, 0.9, 1.0]


def random_problem(seed, n=2, d=2, horizon=1.0, discount=0.0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n)) * 0.5
    B = rng.normal(size=(n, d))
    L = rng.normal(size=(n + d, n + d))
    W = L @ L.T / (n + d) + 0.1 * np.eye(n + d)
    Lg = rng.normal(size=(n + d, n + d))
    G = Lg @ Lg.T / (n + d)
    sx = rng.uniform(0.1, 0.5, size=n)
    sa = rng.uniform(0.2, 0.8, size=d)
    M, R, N = W[:n, :n], W[:n, n:], W[n:, n:]
    return LQProblem(A, B, sx, sa, M, N, R, G, 0.7, horizon=horizon, discount=discount)


def radon_P(prob, K=None):
    """``P(t)`` from the linear Hamiltonian system by matrix exponentials (no ODE solver).

    Optimum: ``P = Y X^{-1}`` with ``d/dt [X; Y] = [[F, -S], [-W, -F^T]] [X; Y]`` and
    ``[X; Y](T) = [I; G]``.
    Constant gain ``K``: the same with ``S = 0``, ``F = calA + calE K`` and ``W + lam K^T K``.
    """
    m = prob.dim
    F = prob.calA - 0.5 * prob.discount * np.eye(m)
    if K is None:
        S, Wt = prob.calE @ prob.calE.T / prob.lam, prob.W
    else:
        F, S, Wt = F + prob.calE @ K, np.zeros((m, m)), prob.W + prob.lam * K.T @ K
    H = np.block([[F, -S], [-Wt, -F.T]])

    def P(t):
        XY = scipy.linalg.expm(H * (t - prob.horizon)) @ np.vstack([np.eye(m), prob.G])
        return np.linalg.solve(XY[:m].T, XY[m:].T).T

    def c(t):
        nodes, weights = np.polynomial.legendre.leggauss(40)
        s = t + (prob.horizon - t) * (nodes + 1) / 2
        vals = [
            np.exp(-prob.discount * (si - t)) * 0.5 * np.trace(prob.noise_cov @ P(si)) for si in s
        ]
        return (prob.horizon - t) / 2 * np.dot(weights, vals)

    return P, c


@pytest.mark.parametrize("name", ["scalar", "planar", "random", "random-discounted"])
def test_riccati_matches_hamiltonian_exponential(name):
    if name.startswith("random"):
        prob = random_problem(3, n=3, d=2, discount=0.4 if "discounted" in name else 0.0)
    else:
        prob = example(name)
    sol = prob.optimal()
    P, c = radon_P(prob)
    for t in TIMES:
        assert np.abs(sol.P(t) - P(t)).max() < 1e-6
        assert abs(sol.c(t) - c(t)) < 1e-6
        assert np.abs(sol.gain(t) + prob.calE.T @ P(t) / prob.lam).max() < 1e-6


def test_design_sanity_value():
    sol = example("scalar").optimal()
    assert sol.Q(0.0, np.array([1.0, -0.5])) == pytest.approx(-0.27897, abs=5e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_lyapunov_matches_exponential(seed):
    prob = random_problem(seed, n=2, d=1)
    K = np.random.default_rng(seed + 10).normal(size=(1, 3))
    ev = prob.evaluate(K)
    P, c = radon_P(prob, K)
    for t in TIMES:
        assert np.abs(ev.P(t) - P(t)).max() < 1e-6
        assert abs(ev.c(t) - c(t)) < 1e-6


def test_evaluate_optimal_gain_reproduces_optimum():
    prob = example("planar")
    sol = prob.optimal()
    ev = prob.evaluate(sol.gain)
    for t in TIMES:
        assert np.abs(ev.P(t) - sol.P(t)).max() < 1e-6


def test_stationary_matches_scipy_are():
    prob = random_problem(5, n=2, d=2, horizon=None, discount=0.3)
    P = prob.optimal().P()
    Ash = prob.calA - 0.15 * np.eye(prob.dim)
    ref = scipy.linalg.solve_continuous_are(Ash, prob.calE, prob.W, prob.lam * np.eye(prob.d))
    assert np.abs(P - ref).max() < 1e-6
    c = prob.optimal().c()
    assert c == pytest.approx(np.trace(prob.noise_cov @ ref) / (2 * 0.3), abs=1e-6)


def test_stationary_is_the_long_horizon_limit():
    stat = random_problem(6, n=1, d=1, horizon=None, discount=1.0)
    long = random_problem(6, n=1, d=1, horizon=40.0, discount=1.0)
    assert np.abs(long.optimal().P(0.0) - stat.optimal().P()).max() < 1e-6


def test_stationary_lyapunov_matches_scipy():
    prob = example("scalar-discounted")
    K = np.array([[-0.5, -2.0]])
    ev = prob.evaluate(K)
    F = prob.calA + prob.calE @ K - 0.25 * np.eye(2)
    ref = scipy.linalg.solve_continuous_lyapunov(F.T, -(prob.W + prob.lam * K.T @ K))
    assert np.abs(ev.P() - ref).max() < 1e-9


def test_evaluate_non_optimal_gain_against_monte_carlo():
    prob = example("scalar")
    K = np.array([[-0.5, -1.0]])
    z0 = np.array([1.0, -0.5])
    exact = prob.evaluate(K).Q(0.0, z0)
    g = torch.Generator().manual_seed(7)
    score = LinearScore.for_problem(prob, K0=K)
    paths = simulate(prob.sde(), score, torch.tensor(z0).repeat(20000, 1), 0.002, generator=g)
    obj = paths.objective()
    se = obj.std().item() / np.sqrt(len(obj))
    assert abs(obj.mean().item() - exact) < 3 * se, (obj.mean().item(), exact, se)


@pytest.mark.parametrize("stationary", [False, True])
def test_policy_iteration_is_monotone_and_converges(stationary):
    prob = example("scalar-discounted") if stationary else example("planar")
    K0 = np.array([[-0.5, -2.0]]) if stationary else -np.hstack([np.zeros((2, 2)), np.eye(2)])
    sols = prob.policy_iteration(K0, n_iter=6)
    mean, cov = np.zeros(prob.dim), np.eye(prob.dim)
    values = [s.expected_value(mean, cov, 0.0) for s in sols]
    assert all(b >= a - 1e-9 for a, b in zip(values, values[1:], strict=False))
    opt = prob.optimal().expected_value(mean, cov, 0.0)
    assert abs(values[-1] - opt) < 1e-6 * abs(opt)
    assert np.abs(sols[-1].greedy_gain(0.0) - prob.optimal().gain(0.0)).max() < 1e-5


def test_conventional_q_collapses_and_augmented_does_not():
    conv = ConventionalLQ(-0.5, 1.0, 0.3, 1.0, 0.2, discount=0.5)
    h1, h2 = conv.action_hessian(0.01)[0, 0], conv.action_hessian(0.001)[0, 0]
    assert h2 / h1 == pytest.approx(0.1, rel=0.02)
    prob = example("scalar-discounted")
    P = prob.optimal().P()
    err = [abs(prob.discrete_time_P(dt)[1, 1] - P[1, 1]) for dt in (0.01, 0.001)]
    assert err[1] < err[0] and err[1] < 2e-3 * P[1, 1]


# ------------------------------------------------------------------ bad input
SCALAR = dict(A=-0.5, B=1.0, sigma_x=0.3, sigma_a=0.5, M=1.0, N=0.2, R=0.1, G=np.eye(2), lam=0.5)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(lam=0.0), "lam must be a positive"),
        (dict(lam=-1.0), "lam must be a positive"),
        (dict(B=np.ones((2, 1))), "B must have shape"),
        (dict(G=np.eye(3)), "G has shape"),
        (dict(M=-1.0), "positive semi-definite"),
        (dict(G=np.array([[1.0, 2.0], [0.0, 1.0]])), "must be symmetric"),
        (dict(horizon=0.0), "horizon must be positive"),
        (dict(horizon=None), "needs discount=beta > 0"),
        (dict(sigma_a=np.ones(3)), "sigma_a has shape"),
    ],
)
def test_bad_problems_get_clear_errors(change, message):
    with pytest.raises(LQError, match=message):
        LQProblem(**{**SCALAR, "horizon": 1.0, **change})


def test_bad_gain_shape_and_time():
    prob = example("scalar")
    with pytest.raises(LQError, match="K of shape"):
        prob.evaluate(np.zeros((2, 2)))
    with pytest.raises(LQError, match="outside"):
        prob.optimal().P(2.0)


def test_unstabilisable_stationary_problem_is_reported():
    # An unstable state that the action cannot reach: no stabilising solution.
    prob = LQProblem(1.0, 0.0, 0.1, 0.1, 1.0, 0.1, 0.0, None, 0.5, horizon=None, discount=0.1)
    with pytest.raises(LQError, match="no stabilising solution"):
        prob.optimal()
    with pytest.raises(LQError, match="does not stabilise"):
        prob.evaluate(np.array([[0.0, -1.0]]))
