"""Comparing algorithms from their tidy training rows: returns at fixed steps with bootstrap
confidence intervals, and the display names of the algorithms.

    table = returns_at(rows, steps=(20_000, 100_000))

``rows`` are the rows of :mod:`cqsm.rl.results` (one per evaluation of each run). A run counts at a
step only if it has an evaluation there, so a run still in progress is left out of the steps it
has not reached, and the table says how many seeds each entry has.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["LABELS", "label", "bootstrap_ci", "returns_at"]

# How each algorithm is named in the book's figures and tables (and coloured: cqsm.pipeline.plots).
LABELS = {
    "cqsm": "CQSM",
    "td3": "TD3",
    "sac": "SAC",
    "diffusion_ql": "Diffusion-QL",
    "qsm": "QSM",
}


def label(algo: str) -> str:
    """The display name of an algorithm (its own name if it has none)."""
    return LABELS.get(algo, algo)


def bootstrap_ci(
    values, level: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    With three seeds it is wide and only roughly calibrated: read it as the spread the seeds
    allow, not as a test. One value gives the interval ``(value, value)``.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def returns_at(
    rows: pd.DataFrame, steps=(20_000, 100_000), y: str = "eval_return", level: float = 0.95
) -> pd.DataFrame:
    """Mean, standard deviation (across seeds) and bootstrap interval of ``y`` at each step,
    per environment and algorithm; ``seeds`` counts the runs that reached the step."""
    out = []
    for (env, algo), group in rows.groupby(["env", "algo"], sort=False):
        for step in steps:
            values = group.loc[group["step"] == step, y].to_numpy()
            low, high = bootstrap_ci(values, level)
            out.append(
                {
                    "env": env,
                    "algo": algo,
                    "step": step,
                    "seeds": values.size,
                    "mean": values.mean() if values.size else np.nan,
                    "std": values.std(ddof=1) if values.size > 1 else np.nan,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(out)
