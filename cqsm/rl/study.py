"""Ablation studies: named variants of an algorithm's settings, trained on the same seeds and
budget, resumable as one sweep.

    from cqsm.rl.study import Variant, study_runs, read_study
    variants = [Variant("reference", {"actor": "feynman_kac"}),
                Variant("projected", {"actor": "feynman_kac", "boundary": "project"})]
    sweep(study_runs(variants, ["HalfCheetah-v5"], seeds=(0, 1), total_steps=50_000, out=root))
    rows = read_study(root, variants)      # the tidy rows with a "variant" column
    write_critic_diagnostics(root / "critic_diagnostics.csv", [r.run_dir for r in runs])
    variant_table({"Hopper-v5": variants}, keys=("lam",))   # the arms' settings as a table

Each variant's runs go to ``<out>/<variant name>/<algo>-<env>-s<seed>``; the settings of a run
are the task's (:data:`cqsm.rl.presets.TASKS` and CQSM's physical default), or the library's
defaults (``task_presets=False``), with the variant's overrides on top, so every variant differs
from the others only where it says. Where a variant's runs on a task are those
of another arm (``runs_of``: the same settings), they are read from that arm's folder, never
copied. An arm run with an option that has since been removed (``removed``: why) keeps its
committed rows, which :func:`read_study` reads, and is left out of :func:`study_runs`: it is never
re-run with settings that no longer mean what they did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cqsm.atomic import atomic_write
from cqsm.rl import results
from cqsm.rl.diagnostics import diagnose_run
from cqsm.rl.train import TrainSettings

__all__ = [
    "Variant",
    "study_runs",
    "read_study",
    "variant_table",
    "critic_diagnostics",
    "write_critic_diagnostics",
]


@dataclass(frozen=True)
class Variant:
    """One arm of a study: a name, the agent settings it overrides and the loop settings it
    overrides (for example ``{"batch_size": 100}``), and what it tests."""

    name: str
    agent: dict = field(default_factory=dict)
    loop: dict = field(default_factory=dict)
    note: str = ""
    task_presets: bool = True
    """apply the task's presets (:data:`cqsm.rl.presets.TASKS`, CQSM's physical default) under
    the variant's settings; False:
    the variant is relative to the library's defaults, and stays what it was when presets change"""
    tasks: dict = field(default_factory=dict)
    """per-task settings on top of ``agent`` and ``loop`` (env id -> (agent dict, loop dict)),
    for an arm whose settings differ by task"""
    runs_of: dict = field(default_factory=dict)
    """tasks on which this variant's runs are another variant's (env id -> that Variant): the
    settings must be the same, and the runs live in, and are read from, that variant's folder"""
    removed: str = ""
    """why this variant can no longer run (an option it set has been removed), or "" if it can:
    its committed runs are read, and it is left out of :func:`study_runs`"""

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"A variant needs a plain folder name; got {self.name!r}.")

    def settings(
        self, env: str, seed: int, total_steps: int, out: str | Path, algo: str = "cqsm"
    ) -> TrainSettings:
        """The run of this variant on ``env`` with ``seed``, in ``<out>/<name>`` (or in the folder
        of the variant whose runs it shares on ``env``). A ``removed`` variant has none."""
        if self.removed:
            raise ValueError(f"Variant {self.name!r} can no longer run: {self.removed}.")
        agent, loop = self.tasks.get(env, ({}, {}))
        mine = TrainSettings.for_task(
            env,
            algo=algo,
            agent=self.agent | agent,
            seed=seed,
            total_steps=total_steps,
            out=str(Path(out) / self.name),
            task_presets=self.task_presets,
            **(self.loop | loop),
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
    """Every run of a study that can still run, seeds innermost (so the first seed of every
    arm comes first); variants marked ``removed`` are left out."""
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"Two variants share a name: {names}.")
    return [
        v.settings(env, seed, total_steps, out, algo)
        for env in envs
        for seed in seeds
        for v in variants
        if not v.removed
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


def variant_table(variants, keys=(), note: bool = True) -> pd.DataFrame:
    """The arms of a study as a table, one row per variant (indexed by its ``name``): the value
    of each of ``keys`` among its agent and loop settings (``"–"`` where it sets none) and,
    with ``note``, what it tests. ``variants`` may be a dict of sequences of variants by task
    (for arms whose settings depend on the task), which adds a ``task`` level to the index."""
    if isinstance(variants, dict):
        tables = {env: variant_table(vs, keys, note) for env, vs in variants.items()}
        return pd.concat(tables, names=["task"])
    rows = []
    for v in variants:
        settings = v.loop | v.agent
        row = {"arm": v.name} | {k: settings.get(k, "–") for k in keys}
        rows.append(row | ({"note": v.note} if note else {}))
    return pd.DataFrame(rows).set_index("arm")


def critic_diagnostics(run_dirs, n_states: int = 6) -> pd.DataFrame:
    """:func:`cqsm.rl.diagnostics.diagnose_run` of every finished run among ``run_dirs`` whose
    critics are at hand (``policy.pt`` and ``checkpoint.pt``; others are passed over), one row
    each, sorted by ``variant`` (the name of the folder holding the run: its arm, or for a
    baseline its algorithm's folder) and ``seed``."""
    measured = [
        {"variant": path.parent.name, "seed": results.read_json(path / "settings.json")["seed"]}
        | diagnose_run(path, n_states=n_states)
        for path in map(Path, run_dirs)
        if (path / "policy.pt").exists() and (path / "checkpoint.pt").exists()
    ]
    frame = pd.DataFrame(measured, columns=None if measured else ["variant", "seed"])
    return frame.sort_values(["variant", "seed"], kind="stable", ignore_index=True)


def write_critic_diagnostics(path: str | Path, run_dirs, n_states: int = 6) -> pd.DataFrame:
    """Write :func:`critic_diagnostics` of ``run_dirs`` to the CSV file ``path`` and its
    provenance beside it (``<name>.provenance.json``), atomically; returns the table. It needs
    the training checkpoints, which are not committed: run it where the runs were trained."""
    path = Path(path)
    where = results.provenance()  # before this writes its own tracked files
    measured = critic_diagnostics(run_dirs, n_states)
    atomic_write(path, lambda tmp: measured.to_csv(tmp, index=False))
    results.write_json(path.with_suffix(".provenance.json"), where)
    return measured
