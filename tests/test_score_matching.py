"""Policy improvement: signs and scales of grad_a Q, improvement steps, learning from data."""

import numpy as np
import pytest
import torch

from cqsm.lq.cqsm import (
    OfflineSettings,
    OnlineSettings,
    critic_greedy_gain,
    gain_error,
    offline_cqsm,
    online_cqsm,
    relative_gain_error,
)
from cqsm.lq.critics import QuadraticCritic
from cqsm.lq.evaluation import initial_states
from cqsm.lq.problem import example
from cqsm.lq.score_matching import (
    action_gradient,
    fit_linear_score,
    improvement_step,
    score_matching_loss,
)
from cqsm.lq.scores import LinearScore, MLPScore
from cqsm.lq.sde import simulate

K = np.array([[-0.5, -1.0]])


@pytest.fixture(scope="module")
def exact_critic():
    prob = example("scalar")
    critic = QuadraticCritic.for_problem(prob, degree=5)
    with torch.no_grad():
        critic.phi.copy_(critic.project(prob.evaluate(K)))
    return prob, critic


def test_action_gradient_against_finite_differences_and_closed_form(exact_critic):
    prob, critic = exact_critic
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 1, generator=g, dtype=torch.float64)
    a = torch.randn(5, 1, generator=g, dtype=torch.float64)
    t = torch.tensor(0.3, dtype=torch.float64)
    grad = action_gradient(critic, t, x, a)
    h = 1e-5
    fd = (critic(t, x, a + h) - critic(t, x, a - h)) / (2 * h)
    assert torch.allclose(grad[:, 0], fd, atol=1e-8)
    # Sign and scale: grad_a Q = -(P z)_a for Q = -1/2 z^T P z - c.
    P = torch.tensor(prob.evaluate(K).P(0.3))
    closed = -(torch.cat([x, a], -1) @ P)[:, 1:]
    assert torch.allclose(grad, closed, atol=1e-4)


def test_exact_score_matching_step_is_the_greedy_gain_and_improves(exact_critic):
    prob, critic = exact_critic
    score = LinearScore.for_problem(prob, K0=K)
    g = torch.Generator().manual_seed(1)
    paths = simulate(prob.sde(), score, initial_states(500, 2, 1.0, g), 0.02, generator=g)
    fit_linear_score(score, critic, paths, prob.lam)
    greedy = prob.evaluate(K).greedy_gain
    for t in (0.0, 0.5, 1.0):
        assert np.abs(score.gain(t) - greedy(t)).max() < 5e-3
    mean, cov = np.zeros(2), np.eye(2)
    before = prob.evaluate(K).expected_value(mean, cov, 0.0)
    after = prob.evaluate(score.gain_function()).expected_value(mean, cov, 0.0)
    assert after > before
    # The opposite sign moves the score away and loses value: the sign is pinned.
    wrong = prob.evaluate(lambda t: 2 * K - greedy(t)).expected_value(mean, cov, 0.0)
    assert wrong < before


def test_greedy_gain_of_the_critic_and_the_gain_error(exact_critic):
    prob, critic = exact_critic
    greedy = critic_greedy_gain(prob, critic)
    exact = prob.evaluate(K).greedy_gain
    for t in (0.0, 0.5, 1.0):
        assert np.abs(greedy(t) - exact(t)).max() < 1e-4
    assert greedy(0.5).shape == (prob.d, prob.dim)
    # With other parameters: phi = 0 is P_phi = G, whose action rows vanish here.
    assert np.abs(critic_greedy_gain(prob, critic, torch.zeros_like(critic.phi))(0.3)).max() == 0
    # The error is relative and over the whole horizon: 0 for K*, 1 for 2 K* and for 0.
    best = prob.optimal().gain
    assert relative_gain_error(prob, best) == 0.0
    assert relative_gain_error(prob, lambda t: 2 * best(t)) == pytest.approx(1.0, abs=1e-12)
    assert relative_gain_error(prob, lambda t: 0 * best(t)) == pytest.approx(1.0, abs=1e-12)
    score = LinearScore.for_problem(prob, K0=K)
    assert gain_error(prob, score) == relative_gain_error(prob, score.gain_function())
    assert gain_error(prob, score) > 0.1


def test_gradient_step_on_score_network_lowers_the_loss(exact_critic):
    prob, critic = exact_critic
    torch.manual_seed(0)
    net = MLPScore(1, 1, hidden=(16,), horizon=1.0)
    g = torch.Generator().manual_seed(2)
    score = LinearScore.for_problem(prob, K0=K)
    paths = simulate(prob.sde(), score, initial_states(200, 2, 1.0, g), 0.05, generator=g)
    t, x, a = paths.t[:-1], paths.x[:, :-1], paths.a[:, :-1]
    before = score_matching_loss(net, critic, t, x, a, prob.lam).item()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    after = improvement_step(net, critic, paths, prob.lam, opt, n_steps=100)
    assert after < 0.2 * before
    with pytest.raises(ValueError, match="lam must be positive"):
        score_matching_loss(net, critic, t, x, a, 0.0)


def test_offline_cqsm_learns_the_riccati_gain():
    prob = example("scalar")
    run = offline_cqsm(prob, OfflineSettings(n_iterations=3, n_paths=4000, dt=0.02), K)
    df, last = run.history, run.history.iloc[-1]
    assert last["gain error"] < 0.05 and last["value gap"] < 2e-3, last.to_dict()
    assert df["value"].iloc[-1] > df["value"].iloc[0]
    assert last["gain error"] == run.final["gain error"]
    assert np.abs(run.score.gain(0.0) - prob.optimal().gain(0.0)).max() < 0.1


@pytest.mark.slow
def test_online_cqsm_learns_the_riccati_gain():
    prob = example("scalar")
    settings = OnlineSettings(n_episodes=40, n_paths=128, dt=0.02, lr=0.5, score_lr=0.5)
    final = online_cqsm(prob, settings, K).final
    assert final["gain error"] < 0.08 and final["value gap"] < 5e-3, final


def test_same_seed_same_numbers():
    prob = example("scalar")
    settings = OfflineSettings(n_iterations=1, n_paths=500, dt=0.05)
    a = offline_cqsm(prob, settings, K).history
    b = offline_cqsm(prob, settings, K).history
    assert a.equals(b)
    c = offline_cqsm(prob, OfflineSettings(n_iterations=1, n_paths=500, dt=0.05, seed=1), K).history
    assert not a.equals(c)


def test_closed_form_action_gradient_matches_autograd(exact_critic):
    prob, critic = exact_critic
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 6, 1, generator=g, dtype=torch.float64)
    a = torch.randn(4, 6, 1, generator=g, dtype=torch.float64)
    t = torch.linspace(0, 1, 6, dtype=torch.float64)
    with torch.enable_grad():
        a_ = a.clone().requires_grad_(True)
        (auto,) = torch.autograd.grad(critic(t, x, a_).sum(), a_)
    assert torch.allclose(critic.action_gradient(t, x, a), auto, atol=1e-12)
