"""Per-task settings: the one table of everything that differs from the defaults for a task.

``TASKS[env_id]`` holds overrides of :class:`cqsm.train.TrainSettings` (key ``"train"`` for every
algorithm, ``"train/<algo>"`` for one) and of each algorithm's settings (key = algorithm name).
:meth:`cqsm.train.TrainSettings.for_task` applies them, and then the user's own settings on top;
the run's ``settings.json`` records the result.
Nothing here is applied silently: the book prints this table and ``cqsm train`` prints what it used.
"""

from __future__ import annotations

__all__ = ["TASKS"]

TASKS: dict[str, dict[str, dict]] = {
    # The stationary scalar LQ problem of cqsm.lq.example("scalar-discounted"): the agent's lam,
    # sigma_a and beta must be the problem's, so that its optimum is the Riccati one.
    "cqsm/LinearQuadratic-v0": {
        "train": {"learning_starts": 1_000, "eval_every": 2_000},
        "cqsm": {"lam": 0.5, "sigma_a": 0.5, "beta": 0.5, "rate_scale": 5.0},
    },
    # Swing-up, 0.05 s per step. The policy-gradient form at lam = 0.01; Q-score matching does
    # as well with lam = 0.03 (chapter 6 shows both, three seeds each).
    "Pendulum-v1": {
        "train": {"learning_starts": 1_000, "eval_every": 1_000},
        "cqsm": {"actor": "feynman_kac", "lam": 0.01},
    },
    # Balancing, 0.04 s per step, actions in [-3, 3]: a slower action than the default lam.
    "InvertedPendulum-v5": {
        "train": {"learning_starts": 1_000, "eval_every": 1_000},
        "cqsm": {"lam": 0.02},
    },
    # Locomotion (MuJoCo -v5). TD3's uniformly random warm-up as in the TD3 paper's experiments:
    # 10k steps on HalfCheetah and Ant, 1k (TD3's default) on the others.
    "HalfCheetah-v5": {"train/td3": {"learning_starts": 10_000}},
    "Ant-v5": {"train/td3": {"learning_starts": 10_000}},
}
