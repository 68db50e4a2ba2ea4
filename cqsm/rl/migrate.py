"""Bring saved runs up to the current settings and row columns, and keep committed runs portable.

    python -m cqsm.rl.migrate paper_figures/results          # rewrite what is out of date
    python -m cqsm.rl.migrate paper_figures/results --check  # only list it (exit 1 if any)

Whenever a setting is renamed, added or removed, or a column is added to the rows, this module
says how an older run reads in the new terms, and this one command migrates every committed
run; resuming and loading a run apply the same :func:`migrate_settings` to its
``settings.json`` on the fly. The steps, oldest first:

1. ``action_repeat`` (env steps per control step, which only CQSM honoured) became
   ``control_interval`` in seconds: ``action_repeat * native dt``. Every committed run had
   ``action_repeat = 1``, its env's own interval.
2. The budgets in simulated seconds and ``updates_per_second`` were added (absent: none, one
   update per control step, as before); the resolved interval (``interval``: frame skip or
   repeat, episode length) is recorded.
3. ``out`` is stored relative to the repository root (older runs recorded the absolute folder
   of the machine that ran them).
4. The rows gained ``sim_time`` (seconds of simulated experience) and ``eval_return_raw`` (the
   sum of the control steps' rewards; equal to ``eval_return`` at the env's own interval).
5. CQSM's ``q_unit`` (the critics' output unit, which changed nothing the agent did) was
   removed: a run at ``q_unit = 1`` reads the same without it. A run made with another value
   keeps its rows as data, but cannot be loaded or resumed (:class:`RemovedSetting`); its
   ``settings.json`` stays the record of how it was made.
6. ``warmup_hold`` (seconds each warm-up draw is held) was added: absent, a fresh draw every
   control step, as before. CQSM gained ``relaxation_step``, whose default is the exact
   relaxation; a run with a relaxation score made before it took the Euler step (``"euler"``),
   and a run without one reads the default, which it never uses.
7. CQSM gained ``bootstrap_span`` (seconds each critic target spans): absent, one control
   step, as before (``None``).
8. CQSM and TD3 gained ``tau_interval`` (the interval at which ``tau`` is the target critics'
   rate): absent, ``tau`` per update at every interval, as before (``None``).
9. CQSM gained ``target_noise_interval`` (the interval at which ``target_noise`` is the target
   smoothing's standard deviation): absent, ``target_noise`` at every interval, as before
   (``None``).
10. SAC gained ``noise_hold`` (seconds each draw of its policy's noise is held in training's
    actions): absent, a fresh draw every control step, as before (``None``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from cqsm.rl import results
from cqsm.rl.envs import resolve_interval

__all__ = ["RemovedSetting", "REMOVED", "migrate_settings", "migrate_rows", "migrate_run", "main"]

NEW_FIELDS = {
    "total_seconds": None,
    "learning_starts_seconds": None,
    "updates_per_second": None,
    "eval_every_seconds": None,
    "checkpoint_every_seconds": None,
    "warmup_hold": None,
}

# Agent settings added since runs were saved, with the value that reads an older run as it was
# made (a function of its saved agent settings).
NEW_AGENT_FIELDS = {
    "cqsm": {
        "relaxation_step": lambda agent: "exact" if agent.get("relaxation") is None else "euler",
        "bootstrap_span": lambda agent: None,
        "tau_interval": lambda agent: None,
        "target_noise_interval": lambda agent: None,
    },
    "td3": {"tau_interval": lambda agent: None},
    "sac": {"noise_hold": lambda agent: None},
}


# Settings removed from an algorithm, with the value at which each one did nothing.
REMOVED = {"cqsm": {"q_unit": 1.0}}


class RemovedSetting(results.RunError):
    """A saved run was made with a setting since removed, at a value that mattered."""


def _without_removed(saved: dict) -> dict:
    """``saved`` without the removed settings that are at their neutral value; raises
    :class:`RemovedSetting` for any other."""
    new = dict(saved) | {"sources": dict(saved["sources"])} if "sources" in saved else dict(saved)
    agent = dict(new.get("agent") or {})
    for name, neutral in REMOVED.get(new["algo"], {}).items():
        if name in agent and agent.pop(name) != neutral:
            raise RemovedSetting(
                f"This {new['algo']} run on {new['env']} was made with {name} = "
                f"{new['agent'][name]!r}, a setting since removed (cqsm.rl.migrate, step 5): "
                "its rows stay as data, but the run cannot be loaded or resumed."
            )
        new.get("sources", {}).pop(f"agent.{name}", None)
    return new | {"agent": agent}


def _portable_out(out: str) -> str:
    """An absolute ``out`` from another machine made relative to the repository root: from its
    ``paper_figures`` folder on, or relative to this checkout's root where it lies inside it."""
    path = Path(out)
    if not path.is_absolute():
        return out
    if "paper_figures" in path.parts:
        return str(Path(*path.parts[path.parts.index("paper_figures") :]))
    return results.portable(path)


def migrate_settings(saved: dict, keep_removed: bool = False) -> dict:
    """A run's ``settings.json`` (as a dict) in the current settings' terms; unchanged when it
    is up to date. Bench settings (no ``algo``) only get a portable ``out``. A run made with a
    removed setting raises :class:`RemovedSetting`, or with ``keep_removed`` keeps it."""
    new = dict(saved)
    if "out" in new:
        new["out"] = _portable_out(new["out"])
    if "algo" not in new:
        return new
    try:
        new = _without_removed(new)
    except RemovedSetting:
        if not keep_removed:
            raise
    repeat = new.pop("action_repeat", None)
    if new.get("control_interval") is None:
        native = resolve_interval(new["env"])
        new["control_interval"] = native.dt * (1 if repeat is None else int(repeat))
    for name, value in NEW_FIELDS.items():
        new.setdefault(name, value)
    agent = new.get("agent")
    if agent is not None:
        for name, value in NEW_AGENT_FIELDS.get(new["algo"], {}).items():
            if name not in agent:
                new["agent"] = agent = dict(agent) | {name: value(agent)}
    if "interval" not in new:
        interval = resolve_interval(new["env"], new["control_interval"])
        new["interval"] = interval.record(new.get("total_steps"))
    return new


def migrate_rows(rows: pd.DataFrame, settings: dict) -> pd.DataFrame:
    """A run's rows with the columns added since it was written (values unchanged)."""
    rows = rows.copy()
    interval = resolve_interval(settings["env"], settings["control_interval"])
    if "sim_time" not in rows:
        rows.insert(rows.columns.get_loc("step") + 1, "sim_time", rows["step"] * interval.dt)
    if "eval_return_raw" not in rows:
        raw = rows["eval_return"] / interval.reward_scale
        rows.insert(rows.columns.get_loc("eval_return_std") + 1, "eval_return_raw", raw)
    return rows


def migrate_run(run_dir: Path, write: bool = True) -> list[str]:
    """Migrate one run folder in place (atomically); returns the files that were out of date."""
    changed = []
    settings_path = run_dir / "settings.json"
    saved = results.read_json(settings_path)
    settings = migrate_settings(saved, keep_removed=True)
    if settings != saved:
        changed.append(str(settings_path))
        if write:
            results.write_json(settings_path, settings)
    rows_path = run_dir / "results.csv"
    if "algo" in settings and rows_path.exists():
        rows = pd.read_csv(rows_path)
        new_rows = migrate_rows(rows, settings)
        if list(new_rows.columns) != list(rows.columns):
            changed.append(str(rows_path))
            if write:
                results.write_rows(rows_path, new_rows.to_dict("records"))
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cqsm.rl.migrate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("folders", nargs="+", type=Path, help="folders searched for run folders")
    parser.add_argument("--check", action="store_true", help="only list what is out of date")
    args = parser.parse_args(argv)
    changed = []
    for folder in args.folders:
        for settings_path in sorted(folder.rglob("settings.json")):
            changed += migrate_run(settings_path.parent, write=not args.check)
    verb = "out of date" if args.check else "migrated"
    print("\n".join(f"{verb}: {path}" for path in changed) or "every run is up to date")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
