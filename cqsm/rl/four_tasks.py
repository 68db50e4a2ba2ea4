"""The four-task comparison (chapter "Results on four tasks"): its plan, runs and coverage.

    runs = planned_runs()                  # what is still to train, in rounds of seeds
    rows = read_runs(root)                 # every committed run of the comparison
    coverage(rows)                         # per algorithm and task: seeds done, seeds missing
    table = per_task_returns(rows, (20_000, 100_000))  # mean, seeds, interval per cell
    versus(table, 100_000, ("td3", "sac"))  # per task: CQSM ahead of, level with, behind each
    target(table, 100_000)                 # per task: CQSM's mean against TD3's and SAC's best

**The plan.** :data:`TASKS` x :data:`ALGOS` x :data:`SEEDS`, each run :data:`STEPS` environment
steps with its algorithm's and task's defaults (:meth:`cqsm.rl.train.TrainSettings.for_task`:
CQSM's is ``cqsm train``'s one setting in physical units), evaluated every 5000 steps. Seeds run
in rounds: every cell's seeds 0-2 first, then 3-4, so that a grid cut short is balanced.

**Reused runs.** Where a committed run already has exactly a planned run's settings it is read
from where it is, not run again (:data:`REUSED`, :func:`reused_folders`): chapter 7's baselines on
HalfCheetah-v5 and Hopper-v5 (seeds 0-2) and its extra TD3 seeds (3-4), and CQSM's native runs of
the control-interval study (seeds 0-4; seeds 3-4 are also the study's further seeds). New runs
go to ``four_tasks/<algo>/``. A test checks that every committed run read here has the plan's
settings.

A run counts at a step only if it has an evaluation there (as in :mod:`cqsm.rl.compare`), so a
run in progress is left out of the steps it has not reached.

**Verdicts.** :func:`versus` reads the paper's claims per task from the intervals of
:func:`per_task_returns`: CQSM is ``ahead`` of a baseline where its interval lies wholly above
the baseline's, ``behind`` where wholly below, ``level`` where they overlap, and only has a
``higher mean`` or ``lower mean`` where either has one seed. :func:`claim` sums a claim up over
the tasks, and :func:`target` reads the book's stricter target: CQSM's mean at least the best of
TD3's and SAC's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cqsm.rl import results
from cqsm.rl.train import TrainSettings

__all__ = [
    "TASKS",
    "ALGOS",
    "SEEDS",
    "ROUNDS",
    "STEPS",
    "EARLY",
    "FOLDER",
    "REUSED",
    "reused_folders",
    "reused",
    "cell_settings",
    "planned_runs",
    "COLUMNS",
    "read_runs",
    "coverage",
    "per_task_returns",
    "against_still",
    "comparable_tasks",
    "versus",
    "claim",
    "target",
    "warmup_steps",
]

TASKS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
"""The MuJoCo tasks, each at its own control interval."""

ALGOS = ("cqsm", "td3", "sac", "diffusion_ql", "qsm")
"""The algorithms compared, CQSM first."""

SEEDS = (0, 1, 2, 3, 4)
"""The seeds of every (algorithm, task) cell."""

ROUNDS = ((0, 1, 2), (3, 4))
"""The seeds in the order they run: every cell's first round before any cell's second."""

STEPS = 100_000
"""Environment steps of every run."""

EARLY = (10_000, 20_000)
"""The early steps at which the claim of higher early returns is read."""

FOLDER = "four_tasks"
"""The comparison's own folder under the results root: a sub-folder per algorithm."""

_TWO = ("HalfCheetah-v5", "Hopper-v5")

REUSED = (
    # (algo, tasks, seeds, folder under the results root)
    ("cqsm", _TWO, SEEDS, "control_interval/native"),  # interval_study's native_runs
    ("td3", _TWO, (0, 1, 2), "ch07_locomotion/td3"),
    ("td3", _TWO, (3, 4), "ch07_td3_check/more-seeds"),  # chapter 7's extra TD3 seeds
    ("sac", _TWO, (0, 1, 2), "ch07_locomotion/sac"),
    ("diffusion_ql", _TWO, (0, 1, 2), "ch07_locomotion/diffusion_ql"),
    ("qsm", _TWO, (0, 1, 2), "ch07_locomotion/qsm"),
)
"""The committed runs the comparison reads where they are, with the settings it plans."""


def reused_folders(root) -> pd.DataFrame:
    """One row per reused (algorithm, task) and folder: ``algo, env, seeds, folder``
    (``folder`` under the results root ``root``)."""
    rows = [
        {"algo": algo, "env": env, "seeds": seeds, "folder": Path(root) / folder}
        for algo, envs, seeds, folder in REUSED
        for env in envs
    ]
    return pd.DataFrame(rows, columns=["algo", "env", "seeds", "folder"])


def reused(algo: str, env: str, seed: int, root) -> Path | None:
    """The folder (under the results root ``root``) whose run of the cell the comparison
    reads, or None where the cell is run into ``four_tasks/<algo>/``."""
    for name, envs, seeds, folder in REUSED:
        if name == algo and env in envs and seed in seeds:
            return Path(root) / folder
    return None


def _rounds(seeds) -> list[int]:
    """``seeds`` in round order (:data:`ROUNDS`; seeds in no round last, in their order)."""
    seeds = list(seeds)
    ordered = [s for r in ROUNDS for s in r if s in seeds]
    return ordered + [s for s in seeds if s not in ordered]


def cell_settings(algo: str, env: str, seed: int, root, out=None, **loop) -> TrainSettings:
    """The run of one cell: :data:`STEPS` steps with the algorithm's and task's defaults, in
    its reused folder under the results root ``root`` where :func:`reused` names one, else in
    ``out`` (default ``<root>/four_tasks``)'s sub-folder ``<algo>``; ``loop`` on top (a quick
    check: a shorter ``total_steps``, a short warm-up)."""
    root = Path(root)
    folder = reused(algo, env, seed, root)
    if folder is None:
        folder = (Path(out) if out is not None else root / FOLDER) / algo
    settings = {"total_steps": STEPS} | loop
    return TrainSettings.for_task(env, algo=algo, seed=seed, out=str(folder), **settings)


def planned_runs(seeds=SEEDS, out=None, root=None, **loop) -> list[TrainSettings]:
    """The comparison's runs still to make (the reused cells left out), in rounds: every cell
    of seeds 0-2, then of 3-4; within a round, seed by seed, task by task, algorithm by
    algorithm. ``out``: the comparison's folder (default ``<root>/four_tasks``), a sub-folder
    per algorithm; ``root``: the results root (default the repository's
    ``paper_figures/results``); ``loop``: settings on top of each run's (a quick check)."""
    root = Path(root) if root is not None else _results_root()
    return [
        cell_settings(algo, env, seed, root, out, **loop)
        for seed in _rounds(seeds)
        for env in TASKS
        for algo in ALGOS
        if reused(algo, env, seed, root) is None
    ]


def _results_root() -> Path:
    root = results.repository_root()
    if root is None:
        raise results.RunError("Not in the repository: pass root= (the results folder).")
    return root / "paper_figures" / "results"


COLUMNS = ("algo", "env", "seed", "step", "eval_return", "eval_return_std", "folder")


def read_runs(root, out=None) -> pd.DataFrame:
    """The rows of every committed run of the comparison, one per evaluation (columns
    :data:`COLUMNS`; ``folder`` is where the run was read, relative to ``root``): the reused
    cells from their folders under the results root ``root``, the others from ``out``
    (default ``<root>/four_tasks``)'s sub-folder per algorithm. Only the plan's tasks and
    algorithms are read, a reused cell only from its own folder."""
    root = Path(root)
    out = Path(out) if out is not None else root / FOLDER
    frames = []
    for r in reused_folders(root).itertuples():
        found = results.read_runs(r.folder, algo=r.algo, env=r.env, seed=list(r.seeds))
        frames.append(_columns(found, r.folder, root))
    for algo in ALGOS:
        found = results.read_runs(out / algo, algo=algo, env=list(TASKS))
        if len(found):
            keep = [
                reused(algo, env, int(seed), root) is None
                for env, seed in zip(found["env"], found["seed"], strict=True)
            ]
            found = found[keep]
        frames.append(_columns(found, out / algo, root))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=list(COLUMNS))
    rows = pd.concat(frames, ignore_index=True)
    order = {algo: i for i, algo in enumerate(ALGOS)} | {e: i for i, e in enumerate(TASKS)}
    return rows.sort_values(
        ["algo", "env", "seed", "step"],
        key=lambda c: c.map(order) if c.name in ("algo", "env") else c,
        ignore_index=True,
    )


def _columns(found: pd.DataFrame, folder: Path, root: Path) -> pd.DataFrame:
    if not len(found):
        return pd.DataFrame(columns=list(COLUMNS))
    found = found.copy()
    if "eval_return_std" not in found:
        found["eval_return_std"] = float("nan")
    try:
        where = Path(folder).relative_to(root).as_posix()
    except ValueError:
        where = str(folder)
    found["folder"] = where
    found["seed"] = found["seed"].astype(int)
    found["step"] = found["step"].astype(int)
    return found[list(COLUMNS)]


def coverage(rows: pd.DataFrame, step: int = STEPS, seeds=SEEDS) -> pd.DataFrame:
    """Per algorithm and task of the plan (every pair, in :data:`ALGOS` and :data:`TASKS`
    order), what exists at ``step``: ``seeds`` (the seeds with an evaluation there, as a
    sorted tuple), ``done`` (how many), ``started`` (runs with any evaluation, but none at
    ``step`` yet) and ``missing`` (planned seeds without an evaluation at ``step``)."""
    planned = set(seeds)
    out = []
    for algo in ALGOS:
        for env in TASKS:
            mine = rows[(rows["algo"] == algo) & (rows["env"] == env)]
            at = {int(s) for s in mine.loc[mine["step"] == step, "seed"]} & planned
            begun = {int(s) for s in mine["seed"]} & planned
            out.append(
                {
                    "algo": algo,
                    "env": env,
                    "seeds": tuple(sorted(at)),
                    "done": len(at),
                    "started": len(begun - at),
                    "missing": len(planned - at),
                }
            )
    return pd.DataFrame(out, columns=["algo", "env", "seeds", "done", "started", "missing"])


def per_task_returns(rows: pd.DataFrame, steps, reps: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Per task, algorithm and step of ``steps``: the mean return and seeds
    (:func:`cqsm.rl.compare.returns_at`), and ``low``, ``high``, rliable's stratified bootstrap
    95% interval of the mean (:func:`cqsm.rl.aggregate.per_task_intervals`) where the cell has
    two seeds or more (NaN otherwise). The intervals are computed one task at a time, so that a
    task whose runs are still missing holds no other back."""
    from cqsm.rl import aggregate
    from cqsm.rl.compare import returns_at

    found = []
    for step in steps:
        n = rows[rows["step"] == step].groupby(["env", "algo"])["seed"].nunique()
        for env in TASKS:
            algos = [a for a in ALGOS if n.get((env, a), 0) >= 2]
            if algos:
                scores = aggregate.score_matrices(rows, step, algos=algos, envs=[env])
                found.append(
                    aggregate.per_task_intervals(scores, reps=reps, seed=seed).assign(step=step)
                )
    columns = ["env", "algo", "step", "low", "high"]
    intervals = pd.concat(found)[columns] if found else pd.DataFrame(columns=columns)
    table = returns_at(rows, steps)
    return table.merge(intervals, on=["env", "algo", "step"], how="left")


def against_still(table: pd.DataFrame, still: pd.DataFrame, step: int) -> pd.DataFrame:
    """Per task and algorithm at ``step`` (``table``: :func:`per_task_returns`'s): its
    ``mean``, ``seeds``, ``low`` and ``high``, the return of holding the action at the box's
    centre (``still``: :func:`cqsm.rl.aggregate.centre_returns`'s ``mean``), and ``margin``,
    the mean less that return; ``moves``: the whole interval (or, with one seed, the mean) lies
    above it, so the policy earns more than a body that does nothing."""
    at = table[table["step"] == step]
    at = at.merge(still[["env", "mean"]].rename(columns={"mean": "still"}), on="env")
    lowest = at["low"].where(at["low"].notna(), at["mean"])
    at = at.assign(margin=at["mean"] - at["still"], moves=lowest > at["still"])
    columns = ["env", "algo", "mean", "seeds", "low", "high", "still", "margin", "moves"]
    return at[columns].reset_index(drop=True)


def comparable_tasks(rows: pd.DataFrame, steps, min_seeds: int = 2) -> tuple[list, list]:
    """The algorithms with ``min_seeds`` seeds or more at the last of ``steps`` on some task,
    and the tasks on which every one of them has that many at every step of ``steps``: what
    the aggregates across tasks pool."""

    def enough(step):
        n = rows[rows["step"] == step].groupby(["algo", "env"])["seed"].nunique()
        return {a: [e for e in TASKS if n.get((a, e), 0) >= min_seeds] for a in ALGOS}

    at = {step: enough(step) for step in steps}
    compared = [a for a, tasks in at[steps[-1]].items() if tasks]
    tasks = [e for e in TASKS if compared and all(e in at[s][a] for a in compared for s in steps)]
    return compared, tasks


_SIDE = ("mean", "seeds", "low", "high")


def versus(table: pd.DataFrame, step: int, baselines) -> pd.DataFrame:
    """Per task (in :data:`TASKS` order) and baseline of ``baselines``: CQSM's mean, seeds and
    interval at ``step`` (``cqsm_mean``, ``cqsm_seeds``, ``cqsm_low``, ``cqsm_high``), the
    baseline's (``baseline_mean``, ...), ``state`` (the module's verdict: ``ahead``, ``level``,
    ``behind``, or ``higher mean`` / ``lower mean`` where either has one seed) and ``higher``
    (CQSM's mean above the baseline's). ``table`` is :func:`per_task_returns`'s; a pair is left
    out where either side has no seed at ``step``."""
    at = table[table["step"] == step].set_index(["env", "algo"])
    columns = ["env", "baseline", "state", "higher"]
    columns += [f"{who}_{k}" for who in ("cqsm", "baseline") for k in _SIDE]
    out = []
    for env in TASKS:
        for baseline in baselines:
            if (env, "cqsm") not in at.index or (env, baseline) not in at.index:
                continue
            c, o = at.loc[(env, "cqsm")], at.loc[(env, baseline)]
            if not (c["seeds"] and o["seeds"]):
                continue
            if np.isnan(c["low"]) or np.isnan(o["low"]):
                state = "higher mean" if c["mean"] > o["mean"] else "lower mean"
            elif c["low"] > o["high"]:
                state = "ahead"
            elif c["high"] < o["low"]:
                state = "behind"
            else:
                state = "level"
            row = {"env": env, "baseline": baseline, "state": state}
            row["higher"] = bool(c["mean"] > o["mean"])
            row |= {f"cqsm_{k}": c[k] for k in _SIDE} | {f"baseline_{k}": o[k] for k in _SIDE}
            out.append(row)
    frame = pd.DataFrame(out, columns=columns)
    return frame.astype({"cqsm_seeds": int, "baseline_seeds": int})


def claim(states: pd.DataFrame, good, baselines) -> dict:
    """A claim summed up over the tasks from :func:`versus`'s ``states`` and ``good`` (one
    bool per row: the claim holds against that baseline there). ``holds``: the tasks where it
    holds against every one of ``baselines``; ``fails``: those where it fails against one;
    ``undecided``: the rest (a baseline, or CQSM, without runs); ``against``: the
    ``(baseline, task)`` pairs where it fails."""
    good = np.asarray(good, dtype=bool)
    holds, fails = [], []
    for env in TASKS:
        mine = (states["env"] == env).to_numpy()
        if mine.any() and not good[mine].all():
            fails.append(env)
        elif mine.any() and set(states.loc[mine, "baseline"]) >= set(baselines):
            holds.append(env)
    bad = states[states["env"].isin(fails).to_numpy() & ~good]
    return {
        "holds": holds,
        "fails": fails,
        "undecided": [e for e in TASKS if e not in holds + fails],
        "against": list(zip(bad["baseline"], bad["env"], strict=True)),
    }


def target(table: pd.DataFrame, step: int, rivals=("td3", "sac")) -> pd.DataFrame:
    """The book's target per task (in :data:`TASKS` order): CQSM's mean at ``step`` (``cqsm``)
    against the best mean of ``rivals`` (``rival``, ``rival_mean``); ``met`` is True or False,
    or None where CQSM or a rival has no run at ``step``. ``table`` is
    :func:`per_task_returns`'s."""
    means = table[table["step"] == step].set_index(["env", "algo"])["mean"]
    out = []
    for env in TASKS:
        mine = means.get((env, "cqsm"), np.nan)
        theirs = {r: means.get((env, r), np.nan) for r in rivals}
        rival = max(theirs, key=lambda r: -np.inf if np.isnan(theirs[r]) else theirs[r])
        known = not (np.isnan(mine) or any(np.isnan(m) for m in theirs.values()))
        met = bool(mine >= theirs[rival]) if known else None
        out.append(
            {"env": env, "cqsm": mine, "rival": rival, "rival_mean": theirs[rival], "met": met}
        )
    return pd.DataFrame(out, columns=["env", "cqsm", "rival", "rival_mean", "met"])


def warmup_steps(algos=ALGOS, tasks=TASKS, **loop) -> pd.DataFrame:
    """Each algorithm's uniformly random warm-up on each task, in environment steps (its
    ``learning_starts`` by :meth:`TrainSettings.for_task`, with ``loop`` on top): one row per
    algorithm, a column per task."""
    return pd.DataFrame(
        {
            algo: {e: TrainSettings.for_task(e, algo=algo, **loop).learning_starts for e in tasks}
            for algo in algos
        }
    ).T
