"""Ablation studies: named variants of an algorithm's settings, trained on the same seeds and
budget, resumable as one sweep.

    from cqsm.rl.study import Variant, study_runs, read_study
    variants = [Variant("reference", {"actor": "feynman_kac"}),
                Variant("projected", {"actor": "feynman_kac", "boundary": "project"})]
    sweep(study_runs(variants, ["HalfCheetah-v5"], seeds=(0, 1), total_steps=50_000, out=root))
    rows = read_study(root, variants)      # the tidy rows with a "variant" column

Each variant's runs go to ``<out>/<variant name>/<algo>-<env>-s<seed>``; the settings of a run
are the task's (:data:`cqsm.rl.presets.TASKS`) with the variant's overrides on top, so every
variant differs from the others only where it says. Where a variant's runs on a task are those
of another arm (``runs_of``: the same settings), they are read from that arm's folder, never
copied.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cqsm.rl import results
from cqsm.rl.train import TrainSettings

__all__ = ["Variant", "study_runs", "read_study"]


@dataclass(frozen=True)
class Variant:
    """One arm of a study: a name, the agent settings it overrides and the loop settings it
    overrides (for example ``{"batch_size": 100}``), and what it tests."""

    name: str
    agent: dict = field(default_factory=dict)
    loop: dict = field(default_factory=dict)
    note: str = ""
    task_presets: bool = True
    """apply the task's presets (:data:`cqsm.rl.presets.TASKS`) under the variant's settings; False:
    the variant is relative to the library's defaults, and stays what it was when presets change"""
    runs_of: dict = field(default_factory=dict)
    """tasks on which this variant's runs are another variant's (env id -> that Variant): the
    settings must be the same, and the runs live in, and are read from, that variant's folder"""

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"A variant needs a plain folder name; got {self.name!r}.")

    def settings(
        self, env: str, seed: int, total_steps: int, out: str | Path, algo: str = "cqsm"
    ) -> TrainSettings:
        """The run of this variant on ``env`` with ``seed``, in ``<out>/<name>`` (or in the folder
        of the variant whose runs it shares on ``env``)."""
        mine = TrainSettings.for_task(
            env,
            algo=algo,
            agent=dict(self.agent),
            seed=seed,
            total_steps=total_steps,
            out=str(Path(out) / self.name),
            task_presets=self.task_presets,
            **self.loop,
        )
        other = self.runs_of.get(env)
        if other is None:
            return mine
        theirs = other.settings(env, seed, total_steps, out, algo)
        differ = results.changed_settings(results.plain(theirs), mine, free={"out", "sources"})
        if differ:
            raise ValueError(
                f"Variant {self.name!r} shares {other.name!r}'s runs on {env}, but their settings "
                f"differ: {', '.join(name for name, _, _ in differ)}."
            )
        return theirs


def study_runs(
    variants, envs, seeds, total_steps: int, out: str | Path, algo: str = "cqsm"
) -> list[TrainSettings]:
    """Every run of a study, seeds innermost (so the first seed of every arm comes first)."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"Two variants share a name: {names}.")
    return [
        v.settings(env, seed, total_steps, out, algo)
        for env in envs
        for seed in seeds
        for v in variants
    ]


def read_study(out: str | Path, variants) -> pd.DataFrame:
    """The committed rows of every run of the study that exists, with a ``variant`` column."""
    frames = []
    for v in variants:
        paths = [
            p
            for p in sorted((Path(out) / v.name).glob("*/results.csv"))
            if not any(f"-{env.replace('/', '_')}-" in p.parent.name for env in v.runs_of)
        ]
        for env, other in v.runs_of.items():
            pattern = f"*-{env.replace('/', '_')}-s*/results.csv"
            paths += sorted((Path(out) / other.name).glob(pattern))
        for path in paths:
            frames.append(pd.read_csv(path).assign(variant=v.name))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
