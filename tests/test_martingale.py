"""Policy evaluation: the martingale loss, orthogonality conditions and the biased MSTDE."""

import numpy as np
import pytest
import torch

from cqsm.lq import martingale as mg
from cqsm.lq.critics import MLPCritic, QuadraticCritic
from cqsm.lq.evaluation import (
    feature_preconditioner,
    initial_states,
    iterate_offline,
    relative_error,
)
from cqsm.lq.problem import example
from cqsm.lq.scores import LinearScore
from cqsm.lq.sde import returns_to_go, simulate

K = np.array([[-0.5, -1.0]])


@pytest.fixture(scope="module")
def setup():
    prob = example("scalar")
    score = LinearScore.for_problem(prob, K0=K)
    g = torch.Generator().manual_seed(0)
    paths = simulate(prob.sde(), score, initial_states(16000, 2, 1.0, g), 0.01, generator=g)
    critic = QuadraticCritic.for_problem(prob, degree=4)
    return prob, prob.evaluate(K), paths, critic


def test_terminal_condition_is_built_in(setup):
    prob, _, paths, critic = setup
    with torch.no_grad():
        critic.phi.normal_()
    q = critic(torch.tensor(1.0), paths.x[:, -1], paths.a[:, -1])
    assert torch.allclose(q, paths.terminal)
    mlp = MLPCritic(1, 1, horizon=1.0, terminal=prob.sde().terminal)
    assert torch.allclose(mlp(torch.tensor(1.0), paths.x[:, -1], paths.a[:, -1]), paths.terminal)
    with torch.no_grad():
        critic.phi.zero_()


def test_projection_recovers_the_exact_q(setup):
    _, ev, _, critic = setup
    eP, ec = relative_error(critic, critic.project(ev), ev)
    assert eP < 1e-3 and ec < 1e-3


def test_martingale_loss_minimiser_is_the_monte_carlo_regression(setup):
    _, _, paths, critic = setup
    phi = mg.fit_martingale_loss(critic, paths)
    # Independent regression: returns to go by a reversed numpy cumulative sum.
    rr = (paths.running_reward * paths.dt).numpy()
    G = np.flip(np.cumsum(np.flip(rr, 1), 1), 1) + paths.terminal.numpy()[:, None]
    feats = critic.features(paths.t, paths.z)[:, :-1].numpy()
    base = critic.base(paths.t, paths.z)[:, :-1].numpy()
    X, y = feats.reshape(-1, feats.shape[-1]), (G - base).reshape(-1)
    ref = np.linalg.lstsq(X, y, rcond=None)[0]
    assert np.allclose(phi.numpy(), ref, rtol=1e-6, atol=1e-8)
    # ... and the martingale loss is stationary there.
    with torch.no_grad():
        critic.phi.copy_(phi)
    critic.zero_grad()
    mg.martingale_loss(mg.critic_on_grid(critic, paths), paths).backward()
    assert critic.phi.grad.abs().max() < 1e-8
    # A trace that never decays (eta = 0, beta = 0) solves the same equations.
    assert torch.allclose(mg.solve_orthogonality(critic, paths, trace_rate=0.0), phi, atol=1e-8)
    with torch.no_grad():
        critic.phi.zero_()


@pytest.mark.parametrize(
    "estimate",
    [
        lambda c, p: mg.fit_martingale_loss(c, p),
        lambda c, p: mg.solve_orthogonality(c, p),
        lambda c, p: mg.solve_orthogonality(c, p, trace_rate=5.0),
    ],
    ids=["martingale-loss", "TD(0)", "TD(lambda)"],
)
def test_each_test_function_recovers_the_lyapunov_q(setup, estimate):
    _, ev, paths, critic = setup
    eP, ec = relative_error(critic, estimate(critic, paths), ev)
    assert eP < 0.025 and ec < 0.2, (eP, ec)


def test_mean_squared_td_error_is_biased(setup):
    _, ev, paths, critic = setup
    phi = mg.fit_mean_squared_td_error(critic, paths)
    with torch.no_grad():
        critic.phi.copy_(phi)
    critic.zero_grad()
    mg.mean_squared_td_error(mg.critic_on_grid(critic, paths), paths).backward()
    assert critic.phi.grad.abs().max() < 1e-8  # it is the minimiser ...
    eP_mstde, _ = relative_error(critic, phi, ev)
    eP_lstd, _ = relative_error(critic, mg.solve_orthogonality(critic, paths), ev)
    assert eP_lstd < 0.025 and eP_mstde > 0.3, (eP_lstd, eP_mstde)  # ... and it is biased.
    # Preconditioned TD(0) iterations converge to the consistent fixed point instead.
    sub = simulate_subset(paths, 4000)
    with torch.no_grad():
        critic.phi.zero_()
    precond = feature_preconditioner(critic.features(sub.t, sub.z)[:, :-1])
    hist = iterate_offline(critic, sub, "TD(0)", 0.1, 30, precond)
    assert torch.allclose(hist[-1], mg.solve_orthogonality(critic, sub), rtol=0.1, atol=0.02)
    with torch.no_grad():
        critic.phi.zero_()


def test_orthogonality_surrogate_gradient_is_the_td_update(setup):
    _, _, paths, critic = setup
    sub = simulate_subset(paths, 50)
    with torch.no_grad():
        critic.phi.normal_(std=0.1)
    critic.zero_grad()
    q = mg.critic_on_grid(critic, sub)
    mg.orthogonality_surrogate(q, sub).backward()
    delta = mg.martingale_increments(q.detach(), sub)
    xi = critic.features(sub.t, sub.z)[:, :-1]
    manual = -(xi * delta[..., None]).sum(1).mean(0)
    assert torch.allclose(critic.phi.grad, manual, atol=1e-10)
    with torch.no_grad():
        critic.phi.zero_()


def simulate_subset(paths, n):
    return paths.select(slice(0, n))


def test_mlp_critic_learns_by_the_martingale_loss(setup):
    prob, _, paths, _ = setup
    torch.manual_seed(0)
    sub = simulate_subset(paths, 500)
    mlp = MLPCritic(1, 1, hidden=(32, 32), horizon=1.0, terminal=prob.sde().terminal)
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        loss = mg.martingale_loss(mg.critic_on_grid(mlp, sub), sub)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_returns_to_go_discounting():
    prob = example("scalar-discounted")
    score = LinearScore.for_problem(prob, K0=K)
    g = torch.Generator().manual_seed(1)
    paths = simulate(prob.sde(), score, initial_states(10, 2, 1.0, g), 0.1, n_steps=20, generator=g)
    G = returns_to_go(paths)
    rr = paths.running_reward * paths.dt
    expected = sum(np.exp(-0.5 * 0.1 * k) * rr[:, k] for k in range(20))
    assert torch.allclose(G[:, 0], expected)
    assert torch.allclose(G[:, 0], paths.objective())


def test_martingale_process_is_flat_under_the_true_q_only():
    prob = example("scalar")
    score = LinearScore.for_problem(prob, K0=K)
    g = torch.Generator().manual_seed(4)
    z0 = torch.tensor([[1.0, -0.5]]).repeat(16000, 1).double()
    paths = simulate(prob.sde(), score, z0, 0.02, generator=g)
    true_q, wrong_q = prob.evaluate(K), prob.optimal()
    for sol, flat in ((true_q, True), (wrong_q, False)):
        end = mg.martingale_process(sol.Q_on_grid(paths), paths)[:, -1]
        z = end.mean().item() / (end.std().item() / np.sqrt(len(end)))
        assert (abs(z) < 3) == flat, (flat, z)
    # The library's closed-form score simulates like a LinearScore with the same gain.
    assert torch.allclose(
        true_q.score(torch.tensor(0.5), paths.x[:, 3], paths.a[:, 3]),
        score(torch.tensor(0.5), paths.x[:, 3], paths.a[:, 3]),
    )


def test_relative_l2_is_infinite_for_a_diverged_fit_and_warns_of_nothing():
    import warnings

    from cqsm.lq.evaluation import relative_l2

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow warning would fail here
        assert relative_l2(lambda t: np.array([1e200]), lambda t: np.array([1.0]), None) == np.inf
    # 3 against 4 at every time of [0, 1]: |3 - 4| / |4|
    assert relative_l2(lambda t: 3.0, lambda t: 4.0, 1.0) == pytest.approx(0.25)


def test_seed_summary_takes_the_geometric_mean_and_central_95_percent_of_the_seeds():
    import pandas as pd

    from cqsm.lq.evaluation import seed_summary

    errors = pd.DataFrame(
        {
            "method": ["m"] * 3 + ["m"] * 3,
            "n_paths": [10] * 3 + [20] * 3,
            "error P": [0.01, 0.1, 1.0, 0.2, 0.2, 0.2],
            "error c": [0.5, 0.5, 0.5, 0.1, 0.4, 0.1],
        }
    )
    table = seed_summary(errors, "n_paths").set_index(["n_paths", "quantity"])
    assert table.loc[(10, "error P"), "mean"] == pytest.approx(0.1)  # 10^mean(-2, -1, 0)
    assert table.loc[(20, "error c"), "mean"] == pytest.approx((0.1 * 0.4 * 0.1) ** (1 / 3))
    low, high = np.percentile([0.01, 0.1, 1.0], [2.5, 97.5])
    assert table.loc[(10, "error P"), ["low", "high"]].tolist() == pytest.approx([low, high])
    assert (table.n_seeds == 3).all() and set(table.method) == {"m"}


def test_rate_summary_leaves_a_learning_rate_out_where_a_seed_diverged():
    import pandas as pd

    from cqsm.lq.evaluation import rate_summary

    online = pd.DataFrame(
        {
            "test function": ["a", "a", "a", "a"],
            "lr": [0.1, 0.1, 1.0, 1.0],
            "error P": [0.01, 1.0, 0.5, np.nan],
            "diverged": [False, False, False, True],
        }
    )
    table = rate_summary(online, "error P").loc["a"]
    assert table.loc[0.1, "geometric mean"] == pytest.approx(0.1)
    assert table.loc[0.1, ["low", "high"]].tolist() == [0.01, 1.0]
    assert table.loc[0.1, "mean"] == pytest.approx(0.505) and table.loc[0.1, "diverged"] == 0
    assert np.isnan(table.loc[1.0, "geometric mean"]) and np.isnan(table.loc[1.0, "low"])
    assert table.loc[1.0, "mean"] == 0.5 and table.loc[1.0, "diverged"] == 1
