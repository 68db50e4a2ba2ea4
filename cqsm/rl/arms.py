"""The arms of chapter 8's study of CQSM on locomotion, as data.

    from cqsm.rl.arms import VARIANTS, HOPPER_LIMIT, RECIPE
    runs = study_runs(VARIANTS, ["HalfCheetah-v5"], (0,), 50_000, out)

:data:`VARIANTS` are the screening arms on HalfCheetah-v5, the reference first; every other arm
changes one thing relative to the arm its note names. They stand on the library's defaults, not
on the tasks' presets (``task_presets=False``): an arm must stay what it was when it ran, whatever
the presets and defaults become. Their committed runs live in
``paper_figures/results/ch08_cqsm_study/<arm name>/``, so an arm's name and settings never
change. An arm run with an option that has since been removed says so in ``removed``: its rows
are read, it is never re-run.

The building blocks (:data:`FK`, :data:`TD3_OPTIMISER`, ...) are the agent and loop settings the
arms combine; :data:`HOPPER_LIMIT` carries HalfCheetah's recipe to Hopper-v5 and :data:`RECIPE` is
what the study kept on each task (``cqsm train``'s default until chapter 9 set one in physical
units), whose Hopper runs are the reference arm's.
"""

from __future__ import annotations

import dataclasses

from cqsm.rl.presets import LOCOMOTION
from cqsm.rl.study import Variant

__all__ = [
    "FK",
    "TD3_OPTIMISER",
    "BRIDGE",
    "TD3_LOOP",
    "TARGETS",
    "ALL",
    "WARMUP",
    "VARIANTS",
    "HOPPER_LIMIT",
    "RECIPE",
]

FK = {"actor": "feynman_kac", "lam": 0.0005}
"""The reference: the Feynman-Kac score update at lam = 0.0005 (mirrored boundary, the default)."""

TD3_OPTIMISER = {"hidden": (400, 300), "critic_lr": 1e-3, "score_lr": 1e-3}
"""TD3's networks and learning rates."""

BRIDGE = (
    FK
    | {"boundary": "project", "relaxation": 0.05, "relaxation_step": "euler"}
    | {"sigma_a": 0.45, "score_every": 2}
    | TD3_OPTIMISER
)
"""One move reaches the score's target (relaxation time = HalfCheetah's control interval, and
the Euler step), with TD3's exploration noise per step (0.45 sqrt(0.05) = 0.1), optimiser and
delayed score updates."""

TD3_LOOP = {"batch_size": 100, "learning_starts": 10_000}
"""TD3's batch and warm-up on HalfCheetah."""

TARGETS = {"target_score": True, "target_noise": 0.2}
"""TD3's target actor and target policy smoothing."""

ALL = BRIDGE | TARGETS | {"score_sees_action": False, "lam": 1e-6}
"""As near to TD3 as the action diffusion allows."""

WARMUP = {"warmup": "action"}
"""Actions uniform in the box during the warm-up, as TD3's."""

_PROJECT = FK | {"boundary": "project"}
_RELAX = _PROJECT | {"relaxation": 0.05, "relaxation_step": "euler"}

VARIANTS = tuple(
    dataclasses.replace(v, task_presets=False)
    for v in (
        Variant(
            "fk-reflect",
            FK,
            note="reference: Feynman-Kac score update, lam = 0.0005, mirrored boundary",
        ),
        Variant(
            "fk-project",
            _PROJECT,
            note="fk-reflect + projected boundary (a score pushing out holds the face)",
        ),
        Variant(
            "fk-reflect-qunit",
            FK | {"q_unit": 0.05},
            note="fk-reflect + critic outputs in per-step units (q_unit = env.dt)",
            removed="q_unit, which only rescaled the critics' outputs",
        ),
        Variant(
            "fk-project-rate40",
            _PROJECT | {"rate_scale": 40.0},
            note="fk-project + rate scale 40/s (one move crosses the box)",
        ),
        Variant(
            "fk-project-td3opt",
            _PROJECT | TD3_OPTIMISER,
            {"batch_size": 100},
            note="fk-project + TD3's optimiser: 400-300 networks, Adam 1e-3, batches of 100",
        ),
        Variant(
            "fk-td3like",
            _PROJECT | {"rate_scale": 40.0, "sigma_a": 0.45, "score_every": 2} | TD3_OPTIMISER,
            {"batch_size": 100},
            note="fk-project-rate40 + TD3's optimiser + sigma_a 0.45 (TD3's noise per step) "
            "+ score updated every second step",
        ),
        Variant(
            "fk-project-unlimited",
            _PROJECT | {"rate_scale": 4000.0, "lam": 1e-6},
            note="fk-project with no speed limit: rate scale 4000/s and lam = 1e-6",
        ),
        Variant(
            "fk-project-relax",
            _RELAX,
            note="fk-project with the relaxation score: Psi = (g(x, a) - a) / 0.05 s",
        ),
        Variant(
            "fk-relax-td3",
            BRIDGE,
            TD3_LOOP,
            note="the bridge to TD3: fk-project-relax + TD3's optimiser, batch and warm-up, "
            "sigma_a 0.45 and the score every second step",
        ),
        Variant(
            "fk-relax-td3-targets",
            BRIDGE | TARGETS,
            TD3_LOOP,
            note="fk-relax-td3 + TD3's target stabilisers: a target score and target noise 0.2",
        ),
        Variant(
            "fk-relax-td3-state",
            BRIDGE | {"score_sees_action": False},
            TD3_LOOP,
            note="fk-relax-td3 with a score that sees the state alone: its target is g(x)",
        ),
        Variant(
            "fk-relax-td3-lam0",
            BRIDGE | {"lam": 1e-6},
            TD3_LOOP,
            note="fk-relax-td3 with lam = 1e-6 (no price on the action's speed)",
        ),
        Variant(
            "fk-relax-td3-all",
            ALL,
            TD3_LOOP,
            note="all three: as near to TD3 as the action diffusion allows",
        ),
        Variant(
            "fk-relax-td3-all-warmup",
            ALL | WARMUP,
            TD3_LOOP,
            note="fk-relax-td3-all with TD3's warm-up: actions uniform in the box",
        ),
        Variant(
            "fk-relax-td3-warmup",
            BRIDGE | WARMUP,
            TD3_LOOP,
            note="fk-relax-td3 with the uniform warm-up alone",
        ),
        Variant(
            "fk-project-td3opt-warmup",
            _PROJECT | TD3_OPTIMISER | WARMUP,
            {"batch_size": 100},
            note="fk-project-td3opt with the uniform warm-up",
        ),
        Variant("fk-reflect-warmup", FK | WARMUP, note="the reference with the uniform warm-up"),
        Variant(
            "fk-relax-warmup",
            _RELAX | WARMUP,
            note="fk-project-relax with the uniform warm-up",
        ),
        Variant(
            "fk-relax-td3-all-warmup-tau0.1",
            ALL | WARMUP | {"relaxation": 0.1},
            TD3_LOOP,
            note="fk-relax-td3-all-warmup with a relaxation time of two control intervals",
        ),
    )
)
"""The screening arms on HalfCheetah-v5, the reference first, on the library's defaults."""

HOPPER_LIMIT = Variant(
    "hopper-td3-limit",
    LOCOMOTION | {"relaxation": 0.008, "sigma_a": 1.118},
    {"batch_size": 100, "learning_starts": 1_000},
    task_presets=False,
    note="fk-relax-td3-all-warmup carried to Hopper-v5",
)
"""HalfCheetah's recipe carried to Hopper-v5: its relaxation time (Hopper's control interval,
0.008 s) and 0.1 of noise per step (sigma_a sqrt(0.008))."""

RECIPE = Variant(
    "recipe",
    tasks={
        "HalfCheetah-v5": (
            LOCOMOTION | {"relaxation": 0.05, "sigma_a": 0.45},
            {"learning_starts": 10_000, "batch_size": 100},
        ),
        "Hopper-v5": (FK, {}),
    },
    task_presets=False,
    runs_of={"Hopper-v5": VARIANTS[0]},
    note="what the study kept on each task (cqsm train's default until chapter 9)",
)
"""What the study kept, per task: on HalfCheetah-v5 ``fk-relax-td3-all-warmup`` (LOCOMOTION at
the control interval, with 0.1 of noise per step), on Hopper-v5 the reference arm's settings, so
the recipe's runs there are that arm's runs. Until chapter 9 these were the tasks' presets."""
