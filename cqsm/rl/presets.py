"""Per-task settings: the one table of everything that differs from the defaults for a task.

``TASKS[env_id]`` holds overrides of :class:`cqsm.rl.train.TrainSettings` (key ``"train"`` for every
algorithm, ``"train/<algo>"`` for one) and of each algorithm's settings (key = algorithm name).
:meth:`cqsm.rl.train.TrainSettings.for_task` applies them, and then the user's own settings on top;
the run's ``settings.json`` records the result.
Nothing here is applied silently: the book prints this table and ``cqsm train`` prints what it used.
"""

from __future__ import annotations

__all__ = ["TASKS", "LOCOMOTION"]

# CQSM's locomotion recipe (chapter 8): the Feynman-Kac score update of a relaxation score whose
# time is one control interval and whose move is the Euler step (so one move can reach any
# action), TD3's optimiser, target score
# and target noise, a score of the state alone, next to no price on speed, and a warm-up that
# draws actions uniformly in the box. Per task: the relaxation time (the control interval) and
# sigma_a, set so that the exploration noise per step is 0.1 (sigma_a sqrt(dt)). HalfCheetah's.
LOCOMOTION = {
    "actor": "feynman_kac",
    "lam": 1e-6,
    "boundary": "project",
    "hidden": (400, 300),
    "critic_lr": 1e-3,
    "score_lr": 1e-3,
    "score_every": 2,
    "target_score": True,
    "target_noise": 0.2,
    "score_sees_action": False,
    "warmup": "action",
    "relaxation_step": "euler",
}

TASKS: dict[str, dict[str, dict]] = {
    # The stationary scalar LQ problem of cqsm.lq.problem.example("scalar-discounted"): the
    # agent's lam, sigma_a and beta must be the problem's, so that its optimum is the Riccati one.
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
    # CQSM: chapter 8's recipe for the task (its study screens every piece of it).
    "HalfCheetah-v5": {
        "train/td3": {"learning_starts": 10_000},
        "train/cqsm": {"learning_starts": 10_000, "batch_size": 100},
        "cqsm": LOCOMOTION | {"relaxation": 0.05, "sigma_a": 0.45},
    },
    # Hopper keeps the study's reference arm (a rate-limited score, the score warm-up): three
    # seeds of it beat TD3 there, one seed of LOCOMOTION did not (chapter 8).
    "Hopper-v5": {"cqsm": {"actor": "feynman_kac", "lam": 0.0005}},
    "Ant-v5": {"train/td3": {"learning_starts": 10_000}},
}
"""The per-task settings, by env id: ``"train"`` (loop settings of every algorithm),
``"train/<algo>"`` (loop settings of one) and ``"<algo>"`` (that algorithm's own settings)."""
