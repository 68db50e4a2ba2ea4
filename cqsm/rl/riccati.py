"""The deep agent on the LQ env, measured against the Riccati solution.

:func:`riccati_gap` compares a trained agent with the closed form of :mod:`cqsm.lq.problem`: the
value of its score (Monte Carlo, the same noise for the learned and the optimal score, so that their
difference is measured path by path) and a least-squares linear fit of its score on the states it
visits, against the optimal gain ``K``. :func:`train_lq` trains with these numbers in every row.
"""

from __future__ import annotations

import numpy as np
import torch

from cqsm.rl.train import TrainSettings, train

__all__ = ["riccati_gap", "train_lq"]


def _numpy_score(agent):
    def score(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return agent.score(torch.as_tensor(obs, dtype=torch.float32)).double().numpy()

    return score


def riccati_gap(agent, env, n_paths: int = 1000, seconds: float = 20.0, seed: int = 0) -> dict:
    """How far ``agent`` (acting in the wrapped LQ ``env``) is from the Riccati optimum.

    Returns ``value`` (the learned score's objective), ``value_optimal`` (the optimal gain's, on
    the same paths), ``value_closed_form`` (``E[Q*(z_0)]``), ``value_gap`` (relative shortfall of
    ``value`` from ``value_optimal``), the fitted gain entries ``gain_<i>`` beside ``K*``'s
    ``gain_opt_<i>``, and ``gain_error`` (relative Frobenius error of the fit).
    """
    lq, diffusion = env.unwrapped, env.diffusion
    K = lq.problem.optimal().gain(0.0)
    visited: list = []
    common = dict(seconds=seconds, n_paths=n_paths, seed=seed, rate_scale=env.rate_scale)
    value, _ = lq.objective(_numpy_score(agent), diffusion, visited=visited, **common)
    optimal, _ = lq.objective(lambda o: o @ K.T, diffusion, **common)
    z = np.concatenate(visited)
    design = np.concatenate([z, np.ones((len(z), 1))], -1)
    fit = np.linalg.lstsq(design, _numpy_score(agent)(z), rcond=None)[0]
    gain = fit[:-1].T
    row = {
        "value": value,
        "value_optimal": optimal,
        "value_closed_form": lq.optimal_objective(),
        "value_gap": (optimal - value) / abs(optimal),
        "gain_error": float(np.linalg.norm(gain - K) / np.linalg.norm(K)),
    }
    for i, (g, k) in enumerate(zip(gain.ravel(), K.ravel(), strict=True)):
        row[f"gain_{i}"], row[f"gain_opt_{i}"] = float(g), float(k)
    return row


def train_lq(settings: TrainSettings, n_paths: int = 1000):
    """:func:`cqsm.rl.train.train` on an LQ env with :func:`riccati_gap` in every row."""
    return train(settings, on_eval=lambda agent, env: riccati_gap(agent, env, n_paths=n_paths))
