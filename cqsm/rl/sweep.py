"""Many runs (algorithm x env x seed) on local worker processes, resumable as a whole.

    from cqsm.rl.sweep import sweep
    frame = sweep([TrainSettings.for_task("Pendulum-v1", seed=s, out="runs") for s in range(3)])

Each run goes to its own folder (:attr:`cqsm.rl.train.TrainSettings.run_dir`). A run whose rows
already reach its ``total_steps`` is skipped, one with a checkpoint is resumed, and any other
starts afresh, so an interrupted sweep continues where it stopped when called again. Each worker
uses one torch thread; run as many workers as there are cores.
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
from collections.abc import Callable

import pandas as pd

from cqsm.rl import results
from cqsm.rl.train import TrainSettings, train

__all__ = ["sweep", "status"]


def status(settings: TrainSettings) -> str:
    """``"done"``, ``"resume"`` or ``"new"`` for one run's folder."""
    run_dir = settings.run_dir
    rows = results.read_rows(run_dir / "results.csv")
    if rows and max(r["step"] for r in rows) >= settings.total_steps:
        return "done"
    return "resume" if (run_dir / "settings.json").exists() else "new"


def _run(job: tuple[TrainSettings, Callable | None]) -> str:
    settings, on_eval = job
    state = status(settings)
    if state != "done":
        train(dataclasses.replace(settings, resume=state == "resume", progress=False), on_eval)
    return str(settings.run_dir)


def sweep(runs: list[TrainSettings], workers: int = 2, on_eval: Callable | None = None):
    """Train every run not yet done, ``workers`` at a time; return all their rows.

    ``on_eval`` (see :func:`cqsm.rl.train.train`) must be a module-level function to reach the
    worker processes.
    """
    names = [str(s.run_dir) for s in runs]
    if len(set(names)) != len(names):
        raise results.RunError("Two runs of the sweep share a run folder; give them other seeds.")
    todo = [(s, on_eval) for s in runs if status(s) != "done"]
    print(f"sweep: {len(runs) - len(todo)} of {len(runs)} runs done; {len(todo)} to run")
    if todo and workers > 1:
        with mp.get_context("spawn").Pool(min(workers, len(todo)), maxtasksperchild=1) as pool:
            for name in pool.imap_unordered(_run, todo):
                print(f"sweep: finished {name}")
    else:
        for job in todo:
            print(f"sweep: finished {_run(job)}")
    return pd.concat([pd.read_csv(s.run_dir / "results.csv") for s in runs], ignore_index=True)
