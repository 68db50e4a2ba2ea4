"""Returns at fixed steps and their bootstrap intervals."""

import numpy as np
import pandas as pd

from cqsm.rl.compare import bootstrap_ci, label, returns_at


def test_bootstrap_interval_of_the_mean_against_normal_theory():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=400)
    low, high = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert abs(low - (x.mean() - half)) < 0.05 and abs(high - (x.mean() + half)) < 0.05
    assert bootstrap_ci([5.0]) == (5.0, 5.0)
    assert all(np.isnan(bootstrap_ci([])))


def test_returns_at_uses_each_runs_row_at_the_step_and_counts_seeds():
    rows = pd.DataFrame(
        {
            "env": ["E"] * 5,
            "algo": ["td3"] * 5,
            "seed": [0, 0, 1, 1, 2],
            "step": [10, 20, 10, 20, 10],  # seed 2 has not reached step 20
            "eval_return": [1.0, 4.0, 3.0, 6.0, 5.0],
        }
    )
    table = returns_at(rows, steps=(10, 20)).set_index("step")
    assert table.loc[10, "seeds"] == 3 and table.loc[10, "mean"] == 3.0
    assert table.loc[20, "seeds"] == 2 and table.loc[20, "mean"] == 5.0
    assert np.isclose(table.loc[20, "std"], np.std([4.0, 6.0], ddof=1))
    assert 4.0 <= table.loc[20, "ci_low"] <= table.loc[20, "ci_high"] <= 6.0
    assert label("diffusion_ql") == "Diffusion-QL" and label("new") == "new"
