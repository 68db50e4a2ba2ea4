"""A training run's folder: settings, tidy result rows, provenance and the checkpoint.

    <out>/<algo>-<env>-s<seed>/   (<algo>-<env>-dt<seconds>-s<seed> at a non-native interval)
        settings.json     every setting of the run as resolved, where each came from, the
                          resolved control interval (frame skip or action repeat)
        results.csv       tidy rows: algo, env, seed, step, eval_return, eval_return_std, ...
        provenance.json   git commit, package versions, machine, wall time, steps per second
        checkpoint.pt     everything needed to continue exactly (agent, replay, random states)

Every file is written atomically, so an interrupted run never leaves a half-written one.
Figures read ``results.csv`` and ``provenance.json``; they never train.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

from cqsm.atomic import atomic_write, atomic_write_text

__all__ = [
    "RunError",
    "run_name",
    "plain",
    "portable",
    "changed_settings",
    "write_json",
    "read_json",
    "tidy",
    "write_rows",
    "read_rows",
    "read_runs",
    "steps_reached",
    "provenance",
    "save_checkpoint",
    "load_checkpoint",
    "ROW_KEYS",
]

# The first columns of every results table, in this order; diagnostics follow.
ROW_KEYS = (
    "algo",
    "env",
    "seed",
    "step",
    "sim_time",
    "eval_return",
    "eval_return_std",
    "eval_return_raw",
    "train_return",
    "episodes",
    "sps",
    "wall_time",
)

PACKAGES = ("cqsm", "torch", "numpy", "gymnasium", "mujoco", "pandas")


class RunError(RuntimeError):
    """A run folder that cannot be used as asked (exists, differs, corrupt), and what to do."""


def run_name(algo: str, env: str, seed: int, control_interval: float | None = None) -> str:
    """The folder name of a run: ``<algo>-<env>-s<seed>`` with ``/`` in env ids made ``_``, and
    ``-dt<seconds>`` before the seed for a run at a control interval other than the env's own
    (``control_interval``), so that runs at different intervals never share a folder."""
    interval = "" if control_interval is None else f"-dt{control_interval:g}"
    return f"{algo}-{env.replace('/', '_')}{interval}-s{seed}"


def repository_root() -> Path | None:
    """The checkout this package runs from (the folder holding ``paper_figures/``), if any."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "paper_figures").is_dir() else None


def portable(path: str | Path) -> str:
    """``path`` as a run records it: relative to the repository root where it lies inside it
    (so committed runs name no machine's folders), else as given."""
    path = Path(path)
    root = repository_root()
    if path.is_absolute() and root is not None and path.resolve().is_relative_to(root):
        return str(path.resolve().relative_to(root))
    return str(path)


def plain(value):
    """Settings as JSON-ready values: dataclasses as dicts, tuples as lists, paths as text."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, value) -> None:
    atomic_write_text(path, json.dumps(plain(value), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"Cannot read {path}: {err}.") from None


def tidy(rows: list[dict]) -> pd.DataFrame:
    """The tidy rows as a DataFrame, known columns first (as ``results.csv`` holds them)."""
    frame = pd.DataFrame(rows)
    columns = [c for c in ROW_KEYS if c in frame] + [c for c in frame if c not in ROW_KEYS]
    return frame[columns]


def write_rows(path: Path, rows: list[dict]) -> None:
    """Write the tidy rows as CSV, known columns first."""
    frame = tidy(rows)
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _with_defaults(saved: dict, settings) -> dict:
    """``saved`` with every field of the dataclass ``settings`` that it lacks at its default,
    nested settings included: a setting added after a run was saved is read at its default,
    which is how the code behaved before the setting existed."""
    try:
        defaults = plain(type(settings)())
    except TypeError:  # no defaults to fill from
        return saved
    filled = dict(saved)
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name not in filled:
            filled[f.name] = defaults[f.name]
        elif dataclasses.is_dataclass(value) and isinstance(filled[f.name], dict):
            filled[f.name] = _with_defaults(filled[f.name], value)
    return filled


def changed_settings(saved: dict, mine, free=()) -> list[tuple[str, object, object]]:
    """The settings of ``mine`` (a dataclass) that differ from ``saved`` (its settings.json), as
    ``(name, saved value, current value)`` with nested settings named ``agent.lam``, leaving out
    the ``free`` ones (which may change between a run and its continuation). A setting newer
    than the saved file counts as unchanged at its default."""

    def differ(old: dict, new: dict, prefix: str):
        for k, value in new.items():
            if prefix + k in free:
                continue
            if isinstance(value, dict) and isinstance(old.get(k), dict):
                yield from differ(old[k], value, f"{prefix}{k}.")
            elif old.get(k) != value:
                yield f"{prefix}{k}", old.get(k), value

    return list(differ(_with_defaults(saved, mine), plain(mine), ""))


def read_rows(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return pd.read_csv(path).to_dict("records")


def _matches(frame: pd.DataFrame, column: str, wanted) -> pd.Series:
    """Which rows of ``frame`` have ``column`` equal to ``wanted`` (one value or several)."""
    values = [wanted] if isinstance(wanted, str | int) else list(wanted)
    return frame[column].isin(values)


def read_runs(folder: str | Path, algo=None, env=None, seed=None) -> pd.DataFrame:
    """The tidy rows of every run under ``folder`` (each ``results.csv`` below it, at any depth,
    in the order of their paths) as one DataFrame, with a fresh index; empty if there are none.

    ``algo``, ``env`` and ``seed`` (each one value or several) keep only the rows of those runs;
    a run with no such rows adds nothing, not even its columns.
    """
    frames = []
    for path in sorted(Path(folder).rglob("results.csv")):
        frame = pd.read_csv(path)
        for column, wanted in (("algo", algo), ("env", env), ("seed", seed)):
            if wanted is not None:
                frame = frame[_matches(frame, column, wanted)]
        if len(frame):
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def steps_reached(rows: pd.DataFrame, by) -> pd.DataFrame:
    """The last step each run has a row at: one row per group of the columns ``by``, one column
    per seed (``<NA>`` where a group has no run of the seed)."""
    if rows.empty:
        return pd.DataFrame(index=pd.Index([], name=by[0] if len(by) == 1 else None))
    last = rows.groupby([*by, "seed"])["step"].max().unstack("seed")
    return last.astype("Int64")


def _git_commit() -> dict:
    root = Path(__file__).resolve().parents[2]

    def git(*args):
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no")) if commit else None
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty}


def _cpu_model() -> str | None:
    """The CPU's model name (Linux's /proc/cpuinfo), or None where it cannot be read."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def provenance(**extra) -> dict:
    """Where and with what a result was computed: git commit, versions, machine, plus ``extra``."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git": _git_commit(),
        "python": sys.version.split()[0],
        "packages": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu": _cpu_model(),
            # the vector instructions torch's CPU kernels use: float results differ across them
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
        },
        **extra,
    }


def save_checkpoint(path: Path, state: dict) -> None:
    """Save ``state`` with ``torch.save``, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def load_checkpoint(path: Path, weights_only: bool = False) -> dict:
    """Load a file written by :func:`save_checkpoint`.

    A training checkpoint holds random-number states, so it is unpickled in full: load only
    checkpoints you made. ``weights_only=True`` (for ``policy.pt``) loads tensors and plain
    containers only.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except FileNotFoundError:
        raise RunError(f"No checkpoint at {path}; the run has not reached its first one.") from None
    except Exception as err:  # noqa: BLE001 - any unpickling failure means a corrupt file
        raise RunError(
            f"The checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err}). "
            "Delete it to start the run over, or restore it from a copy."
        ) from None
