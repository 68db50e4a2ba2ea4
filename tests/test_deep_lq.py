"""The deep CQSM agent against the exact answer: the Riccati value and gain of the LQ env."""

import numpy as np
import pytest
import torch

from cqsm.rl.agents import CQSMAgent
from cqsm.rl.riccati import riccati_gap, train_lq
from cqsm.rl.train import TrainSettings, make_env


def test_riccati_gap_of_the_optimal_gain_is_zero(monkeypatch):
    settings = TrainSettings.for_task("cqsm/LinearQuadratic-v0")
    env = make_env(settings, explore=False)
    agent = CQSMAgent(settings.agent, env)
    K = env.unwrapped.problem.optimal().gain(0.0)

    def linear(obs):
        return obs @ torch.as_tensor(K, dtype=obs.dtype).T

    monkeypatch.setattr(agent, "score", linear)
    gap = riccati_gap(agent, env, n_paths=200)
    assert gap["value_gap"] == pytest.approx(0.0, abs=1e-7)  # float32 networks
    assert gap["gain_error"] < 1e-5
    np.testing.assert_allclose([gap["gain_0"], gap["gain_1"]], K.ravel(), rtol=1e-5)


@pytest.mark.slow
def test_deep_agent_reaches_the_riccati_value(tmp_path):
    """A CI-sized run: the learned score's value is within 5% of the Riccati optimum."""
    settings = TrainSettings.for_task(
        "cqsm/LinearQuadratic-v0",
        total_steps=8_000,
        learning_starts=1_000,
        eval_every=4_000,
        out=str(tmp_path),
        progress=False,
        agent={"hidden": (64, 64)},
    )
    torch.manual_seed(0)
    env = make_env(settings, explore=False)
    untrained = riccati_gap(CQSMAgent(settings.agent, env), env)["value_gap"]
    assert untrained > 0.5  # the check is not met without learning
    rows = train_lq(settings, n_paths=1000).rows
    assert rows["value_gap"].iloc[-1] < 0.05, rows[["step", "value", "value_optimal", "value_gap"]]
