"""Per-task settings and CQSM's one default in physical units.

``TASKS[env_id]`` holds overrides of :class:`cqsm.rl.train.TrainSettings` (key ``"train"`` for every
algorithm, ``"train/<algo>"`` for one) and of each algorithm's settings (key = algorithm name).
CQSM has no per-task row beyond a problem's own: on any env :func:`default` derives its
settings from the env's own control interval ``T``, action box and time limit
(:func:`physical` at :data:`PHYSICAL`, chapter 9). :meth:`cqsm.rl.train.TrainSettings.for_task`
applies the rows and that default, and then the user's own settings on top; the run's
``settings.json`` records the result.
Nothing here is applied silently: the book prints this table and ``cqsm train`` prints what it used.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from cqsm.rl.envs import check_box_actions, native_action_space, resolve_interval

__all__ = ["TASKS", "LOCOMOTION", "PHYSICAL", "physical", "default", "default_table"]

# CQSM's locomotion recipe (chapter 8): the Feynman-Kac score update of a relaxation score whose
# time is one control interval and whose move is the Euler step (so one move can reach any
# action), TD3's optimiser, target score
# and target noise, a score of the state alone, next to no price on speed, and a warm-up that
# draws actions uniformly in the box. Per task (cqsm.rl.arms.RECIPE): the relaxation time (the
# control interval) and sigma_a, set so that the exploration noise per step is 0.1.
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
    # agent's lam, sigma_a and beta must be the problem's, so that its optimum is the Riccati one
    # (a problem's own row: CQSM's physical default does not apply).
    "cqsm/LinearQuadratic-v0": {
        "train": {"learning_starts": 1_000, "eval_every": 2_000},
        "cqsm": {"lam": 0.5, "sigma_a": 0.5, "beta": 0.5, "rate_scale": 5.0},
    },
    # Swing-up, 0.05 s per step; balancing, 0.04 s per step, actions in [-3, 3].
    "Pendulum-v1": {"train": {"learning_starts": 1_000, "eval_every": 1_000}},
    "InvertedPendulum-v5": {"train": {"learning_starts": 1_000, "eval_every": 1_000}},
    # Locomotion (MuJoCo -v5). TD3's uniformly random warm-up as in the TD3 paper's experiments:
    # 10k steps on HalfCheetah and Ant, 1k (TD3's default) on the others.
    "HalfCheetah-v5": {"train/td3": {"learning_starts": 10_000}},
    "Ant-v5": {"train/td3": {"learning_starts": 10_000}},
}
"""The per-task settings, by env id: ``"train"`` (loop settings of every algorithm),
``"train/<algo>"`` (loop settings of one) and ``"<algo>"`` (that algorithm's own settings)."""


def half_width(env: str) -> float:
    """The half-width of ``env``'s action box (its widest coordinate's), in action units."""
    space = native_action_space(env)
    return float(np.max((space.high - space.low) / 2))


def physical(
    env: str,
    lag_price: float = 0.0,
    relaxation_intervals: float = 1.0,
    warmup_limits: float = 10.0,
    **agent,
) -> tuple[dict, dict]:
    """CQSM's agent and loop settings on ``env`` in physical units, from the env's own interval
    ``T``, the half-width ``h`` of its action box and its time limit, none of which changes with
    the control interval:

    - a relaxation score of time ``tau = relaxation_intervals * T``, integrated exactly;
    - exploration noise ``sigma_a sqrt(T) = 0.1 h``;
    - a price ``lag_price`` per second on the squared lag between the score's target and the
      action in half-widths, ``lam = lag_price * tau^2 / h^2`` (the running penalty is then
      ``(lag_price / 2)|g - a|^2 / h^2`` per second at any interval short of ``tau``; 1e-6 at
      ``lag_price = 0``, chapter 8's next to nothing);
    - a warm-up of ``warmup_limits`` time limits in seconds, the action drawn uniformly in the
      box and each draw held for ``T`` (the library's 5,000 steps where the env has no time
      limit);
    - chapter 8's recipe for the rest (``LOCOMOTION``), batches of 100 (TD3's), and ``agent``
      on top.

    An env without an interval of its own is refused (``cqsm.rl.envs.resolve_interval``).
    """
    native = resolve_interval(env)
    h = half_width(env)
    tau = relaxation_intervals * native.dt
    settings = LOCOMOTION | {
        "relaxation": tau,
        "relaxation_step": "exact",
        "sigma_a": 0.1 * h / math.sqrt(native.dt),
        "lam": float(f"{lag_price * tau**2 / h**2:.6g}") if lag_price > 0 else 1e-6,
    }
    loop = {"batch_size": 100, "warmup_hold": native.dt}
    if native.episode_steps is not None:
        loop["learning_starts_seconds"] = warmup_limits * native.episode_steps * native.dt
    return settings | agent, loop


PHYSICAL = {"lag_price": 1.0, "relaxation_intervals": 1.0, "warmup_limits": 10.0}
"""CQSM's one setting on every env, as arguments of :func:`physical` (chapter 9's screen)."""


def default(env: str, algo: str) -> tuple[dict, dict]:
    """The agent and loop settings that ``algo`` takes on ``env`` from its physical units
    rather than from a row of :data:`TASKS`: CQSM's :func:`physical` at :data:`PHYSICAL`,
    except on a task whose row defines the problem's own agent (the LQ env); nothing for the
    other algorithms."""
    if algo != "cqsm" or "cqsm" in TASKS.get(env, {}):
        return {}, {}
    check_box_actions(env, algo)  # before anything else is asked of the env
    return physical(env, **PHYSICAL)


def default_table(envs) -> pd.DataFrame:
    """CQSM's default (:func:`default`) on each of ``envs`` as a table, one column per env: the
    env's own interval ``T``, box half-width ``h`` and time limit, then every setting it sets."""
    columns = {}
    for env in envs:
        native = resolve_interval(env)
        agent, loop = default(env, "cqsm")
        columns[env] = {
            "T (s)": native.dt,
            "h": half_width(env),
            "time limit (steps)": native.episode_steps,
            **{f"agent.{k}": v for k, v in agent.items()},
            **loop,
        }
    return pd.DataFrame(columns).astype(object)
