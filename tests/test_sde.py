"""The augmented SDE: simulation, the KL rate of the action kernel, bad input, plotting output."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from cqsm.lq.problem import example  # noqa: E402
from cqsm.lq.scores import LinearScore  # noqa: E402
from cqsm.lq.sde import euler_log_likelihood_ratio, kl_rate, simulate  # noqa: E402
from cqsm.pipeline import plots  # noqa: E402

K = np.array([[-0.5, -1.0]])


def run(seed, n=2000, dt=0.05):
    prob = example("scalar")
    score = LinearScore.for_problem(prob, K0=K)
    g = torch.Generator().manual_seed(seed)
    z0 = torch.randn(n, 2, generator=g, dtype=torch.float64)
    return prob, simulate(prob.sde(), score, z0, dt, generator=g)


def test_shapes_and_determinism():
    _, p1 = run(3)
    _, p2 = run(3)
    _, p3 = run(4)
    assert (
        p1.x.shape == (2000, 21, 1) and p1.psi.shape == (2000, 20, 1) and p1.r.shape == (2000, 20)
    )
    assert torch.equal(p1.a, p2.a) and not torch.equal(p1.a, p3.a)


def test_action_moves_by_the_score_and_sigma_a():
    # One step from a fixed state: the mean move is Psi dt and the variance sigma_a^2 dt.
    prob = example("scalar")
    score = LinearScore.for_problem(prob, K0=K)
    g = torch.Generator().manual_seed(5)
    z0 = torch.tensor([[1.0, -0.5]]).repeat(200000, 1).double()
    paths = simulate(prob.sde(), score, z0, 0.5, t0=0.5, generator=g)
    da = (paths.a[:, 1] - paths.a[:, 0])[:, 0]
    psi = float((K @ np.array([1.0, -0.5]))[0])
    assert abs(da.mean().item() - psi * 0.5) < 4 * da.std().item() / np.sqrt(len(da))
    assert da.var().item() == pytest.approx(0.25 * 0.5, rel=0.02)


def test_kl_rate_matches_the_euler_kernel():
    prob, paths = run(6, n=20000, dt=0.05)
    sigma_a = prob.sde().sigma_a
    llr = euler_log_likelihood_ratio(paths, sigma_a)
    predicted = (kl_rate(paths.psi, sigma_a) * paths.dt).sum(1)
    diff = llr - predicted
    assert abs(diff.mean().item()) < 3 * diff.std().item() / np.sqrt(len(diff))
    # The regulariser is lam * sigma_a^2 times the KL rate.
    rate = kl_rate(paths.psi, sigma_a)
    penalty = 0.5 * prob.lam * (paths.psi**2).sum(-1)
    assert torch.allclose(penalty, prob.lam * 0.25 * rate)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(dt=0.0), "dt must be a positive"),
        (dict(dt=-0.1), "dt must be a positive"),
        (dict(dt=0.3), "must be a positive integer"),
        (dict(z0=torch.zeros(3, 5)), "z0 must have shape"),
    ],
)
def test_bad_simulation_input(kwargs, message):
    prob = example("scalar")
    score = LinearScore.for_problem(prob, K0=K)
    args = dict(z0=torch.zeros(3, 2), dt=0.1) | kwargs
    with pytest.raises(ValueError, match=message):
        simulate(prob.sde(), score, args["z0"], args["dt"])


def test_score_with_wrong_shape_is_reported():
    prob = example("scalar")
    with pytest.raises(ValueError, match="score returned shape"):
        simulate(prob.sde(), lambda t, x, a: torch.zeros(len(x), 2), torch.zeros(3, 2), 0.1)


def test_save_writes_pdf_png_and_data(tmp_path, monkeypatch):
    monkeypatch.setenv("CQSM_FIGURE_DIR", str(tmp_path))
    plots.set_style()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], color=plots.color("TD3"))
    plots.save(fig, "fig-test", pd.DataFrame({"x": [0, 1], "y": [0, 1]}))
    for ext in ("pdf", "png", "csv"):
        assert (tmp_path / f"fig-test.{ext}").stat().st_size > 0
    with pytest.raises(ValueError, match="tidy data"):
        plots.save(fig, "fig-test", None)
    plt.close(fig)
    assert plots.color("CQSM") != plots.color("TD3")
