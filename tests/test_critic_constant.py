"""The critic's constant c(t): why a free fit misses it, and the Ito constant that does not."""

import numpy as np
import pytest
import torch

from cqsm.lq import martingale as mg
from cqsm.lq.cqsm import OfflineSettings, fit_critic, offline_cqsm
from cqsm.lq.critics import QuadraticCritic
from cqsm.lq.evaluation import initial_states, relative_error
from cqsm.lq.problem import LQProblem, example
from cqsm.lq.scores import LinearScore
from cqsm.lq.sde import noise_covariance, returns_to_go, simulate

K_START = {"scalar": np.array([[-0.5, -1.0]]), "planar": -np.hstack([np.zeros((2, 2)), np.eye(2)])}


def _problems():
    discounted = LQProblem(
        -0.5, 1.0, 0.3, 0.5, 1.0, 0.2, 0.1, np.diag([1.0, 0.0]), 0.5, horizon=1.0, discount=0.8
    )
    return {
        "scalar": example("scalar"),
        "planar": example("planar"),
        "scalar-discounted": example("scalar-discounted"),
        "finite horizon, discounted": discounted,
    }


@pytest.mark.parametrize("name", list(_problems()))
def test_ito_constant_of_the_exact_p_is_the_exact_c(name):
    """c(t) = int_t^T e^{-beta(s-t)} 1/2 tr(Sigma Sigma^T P(s)) ds, for the optimum and a score."""
    prob = _problems()[name]
    K = K_START["planar" if prob.n == 2 else "scalar"]
    for sol in (prob.optimal(), prob.evaluate(K)):
        critic = QuadraticCritic.for_problem(prob, 6)
        exact = critic.project(sol)
        wrong = exact.clone()
        wrong.view(critic.basis.size, -1)[:, -1] = 0.0
        phi = critic.ito_constant(wrong, prob.noise_cov, prob.discount)
        eP, ec = relative_error(critic, phi, sol)
        assert eP == relative_error(critic, exact, sol)[0]  # P untouched
        assert ec < 1e-4, (name, ec)


def test_noise_covariance_is_the_noise_of_the_increments():
    """Recovered from paths under a constant gain (Psi collinear with z), without the model."""
    prob = example("planar")
    score = LinearScore.for_problem(prob, 4, K0=K_START["planar"])
    gen = torch.Generator().manual_seed(0)
    paths = simulate(prob.sde(), score, initial_states(2000, 4, 3.0, gen), 0.01, generator=gen)
    exact = prob.noise_cov
    cov = noise_covariance(paths).numpy()
    assert np.abs(np.diag(cov) / np.diag(exact) - 1).max() < 0.02
    assert np.abs(cov - np.diag(np.diag(cov))).max() < 2e-3
    # The raw quadratic variation is far off: the drift's square is of the noise's size here
    dz = (paths.z[:, 1:] - paths.z[:, :-1]).reshape(-1, 4)
    raw = (dz.T @ dz / len(dz) / paths.dt).numpy()
    assert np.abs(np.diag(raw) / np.diag(exact) - 1).max() > 0.2


def test_free_constant_is_noise_not_bias_and_the_ito_constant_removes_it():
    """Under a fixed score, the free fit's c(0) scatters over seeds by the returns' Monte Carlo
    floor sd(G_0 - Q(0, z_0)) / sqrt(N); the Ito constant of the same fit does not."""
    prob, N, dt = example("scalar"), 2000, 0.02
    exact = prob.evaluate(K_START["scalar"])
    score = LinearScore.for_problem(prob, 4, K0=K_START["scalar"])
    critic = QuadraticCritic.for_problem(prob, 4)
    free_c0, ito_c0, free_errors, ito_errors, floors = [], [], [], [], []
    for seed in range(8):
        gen = torch.Generator().manual_seed(seed)
        z0 = initial_states(N, prob.dim, 3.0, gen)
        paths = simulate(prob.sde(), score, z0, dt, generator=gen)
        phi, free = fit_critic(critic, paths)
        assert torch.equal(free, mg.fit_martingale_loss(critic, paths))
        free_c0.append(critic.c(0.0, free))
        ito_c0.append(critic.c(0.0, phi))
        free_errors.append(relative_error(critic, free, exact)[1])
        ito_errors.append(relative_error(critic, phi, exact)[1])
        noise = returns_to_go(paths)[:, 0] - torch.from_numpy(exact.Q(0.0, z0.numpy()))
        floors.append(float(noise.std()) / np.sqrt(N))
    floor = float(np.mean(floors))
    assert 0.5 * floor < np.std(free_c0, ddof=1) < 2.0 * floor
    assert floor > 0.1 * exact.c(0.0)  # a free constant cannot meet 1% from these data
    assert np.std(ito_c0, ddof=1) < 0.1 * floor
    # What is left is P's: its O(dt) bias at dt = 0.02 and its noise at 2000 paths
    assert max(ito_errors) < 0.03 and np.median(free_errors) > 5 * np.median(ito_errors)


@pytest.mark.slow
@pytest.mark.parametrize("name, dt", [("scalar", 0.01), ("planar", 0.005)])
def test_offline_cqsm_at_book_size_meets_one_percent_on_c(name, dt):
    """Chapter 5's book-profile offline runs: P, c and the gain within 1%."""
    settings = OfflineSettings(n_iterations=3, n_paths=16000, dt=dt, init_spread=3.0)
    final = offline_cqsm(example(name), settings, K_START[name]).final
    assert final["critic c error"] < 0.01, final
    assert final["critic P error"] < 0.01 and final["gain error"] < 0.01, final
    assert final["free c error"] > 0.03, final  # what the free constant gives on the same data
