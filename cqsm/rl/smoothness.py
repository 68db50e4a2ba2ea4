"""How smooth a trained policy's actions are: what a control interval's action means for an
actuator.

    action_smoothness(actions, dt, low, high)   # one episode's applied actions (T, d)
    run_smoothness("paper_figures/results/control_interval/per-step/td3-Hopper-v5-dt0.002-s0")
    write_smoothness("paper_figures/results/control_interval/smoothness.csv", run_dirs)
    smoothness_summary(table)     # per algorithm, task and interval: means over the episodes
    logged_agreement(table)       # per run: its measured episodes against its results.csv
    measured_where("…/smoothness.csv")   # per run: the sitting and machine that measured it

Two numbers per evaluation episode, for any algorithm (the applied actions of
:func:`cqsm.rl.evaluation.evaluate`; for CQSM the action process's value):

- the **mean squared action rate** ``mean_k |a_k - a_{k-1}|^2 / dt^2`` (Euclidean norm over the
  action's coordinates; action units squared per second squared) and its square root, the RMS
  rate (action units per second). The mean is over the ``T - 1`` differences of the episode's
  ``T`` actions: the first action is its own predecessor (``a_{-1} = a_0``) and that step is not
  counted, so every algorithm is measured alike whatever it starts from (CQSM's action process
  starts at its own initial action, TD3's and SAC's at none). A sine ``sin(w t)`` sampled every
  ``dt`` over whole periods gives exactly ``2 sin^2(w dt / 2) / dt^2``, which tends to
  ``w^2 / 2``;
- the **fraction of steps at a face of the box**: steps at which any coordinate lies within
  ``face_tol`` (0.1%) of the box's width of its bound (or beyond it), and the same per coordinate.

:func:`cqsm.rl.diagnostics.action_statistics` is the older per-coordinate summary of chapter 8
(RMS over coordinates, 1% faces, bandwidth); this module's numbers are per step, over the whole
action vector. Everything is measured on the episodes of the evaluation protocol: the start
seeds and torch seed of the run's final evaluation (:func:`cqsm.rl.evaluation.eval_seed` at the
saved policy's step), so episode 0's return is that of the first episode behind the last row of
the run's ``results.csv``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cqsm.atomic import atomic_write
from cqsm.rl import results
from cqsm.rl.envs import interval_of
from cqsm.rl.evaluation import episode_seed, evaluate

__all__ = [
    "FACE_TOL",
    "COLUMNS",
    "action_smoothness",
    "run_smoothness",
    "write_smoothness",
    "smoothness_summary",
    "logged_agreement",
    "price_of_speed",
    "measured_where",
]

FACE_TOL = 1e-3
"""A coordinate is at a face when within this fraction of the box's width of its bound."""

# The columns of the smoothness table, in this order.
COLUMNS = (
    "algo",
    "env",
    "seed",
    "dt",
    "native_dt",
    "episode",
    "steps",
    "mean_sq_rate",
    "rms_rate",
    "at_face",
    "at_face_coord_mean",
    "at_face_per_coord",
    "eval_return",
    "policy_step",
    "start_seed",
    "run",
)


def action_smoothness(actions, dt: float, low, high, face_tol: float = FACE_TOL) -> dict:
    """The rate and face statistics of one episode's applied actions ``(T, d)`` at interval
    ``dt`` seconds in the box ``[low, high]`` (each of shape ``(d,)``).

    Returns ``steps`` (T), ``mean_sq_rate`` (mean over the T - 1 differences of
    ``|a_k - a_{k-1}|^2 / dt^2``; NaN for a one-step episode), ``rms_rate`` (its square root),
    ``at_face`` (fraction of the T steps with any coordinate within ``face_tol`` of the box width
    of a bound), ``at_face_per_coord`` (that fraction for each coordinate, shape ``(d,)``) and
    ``at_face_coord_mean`` (their mean: the fraction of coordinate-steps at a face).
    """
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(
            f"actions must be an array of shape (steps, action dims) with at least one of each; "
            f"got shape {a.shape} (one coordinate: reshape to (-1, 1))."
        )
    if not np.isfinite(a).all():
        raise ValueError("actions must be finite; they hold NaN or infinite values.")
    d = a.shape[1]
    bounds = []
    for name, value in (("low", low), ("high", high)):
        b = np.asarray(value, dtype=np.float64)
        b = np.full(d, float(b)) if b.ndim == 0 else b
        if b.shape != (d,):
            raise ValueError(
                f"{name} must have one bound per action coordinate, shape ({d},); "
                f"got shape {b.shape}."
            )
        if not np.isfinite(b).all():
            raise ValueError(f"{name} must be finite; got {b}.")
        bounds.append(b)
    low, high = bounds
    if not (high > low).all():
        raise ValueError(f"high must exceed low in every coordinate; got low={low}, high={high}.")
    if isinstance(dt, bool) or not isinstance(dt, int | float | np.number):
        raise ValueError(f"dt must be a positive number of seconds; got {dt!r}.")
    if not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a positive number of seconds; got {dt!r}.")
    if not (math.isfinite(face_tol) and 0 <= face_tol < 0.5):
        raise ValueError(
            f"face_tol must be a fraction of the box width in [0, 0.5); got {face_tol!r}."
        )
    rate_sq = (np.diff(a, axis=0) ** 2).sum(axis=1) / dt**2
    mean_sq = float(rate_sq.mean()) if len(rate_sq) else math.nan
    margin = face_tol * (high - low)
    near = (a - low <= margin) | (high - a <= margin)
    per_coord = near.mean(axis=0)
    return {
        "steps": int(a.shape[0]),
        "mean_sq_rate": mean_sq,
        "rms_rate": math.sqrt(mean_sq) if len(rate_sq) else math.nan,
        "at_face": float(near.any(axis=1).mean()),
        "at_face_coord_mean": float(per_coord.mean()),
        "at_face_per_coord": per_coord,
    }


def run_smoothness(run_dir, n_episodes: int = 1, face_tol: float = FACE_TOL) -> list[dict]:
    """:func:`action_smoothness` of the first ``n_episodes`` episodes of the evaluation protocol
    under a saved run's trained policy (``policy.pt``), one row each (the :data:`COLUMNS`; the
    per-coordinate fractions as text, space-separated). ``eval_return`` is the episode's return
    in the env's native units."""
    run_dir = Path(run_dir)
    if not (run_dir / "policy.pt").exists():
        raise results.RunError(
            f"{run_dir} has no policy.pt: its run has not finished (or it is not a run folder); "
            "smoothness is measured on a trained policy only."
        )
    if not isinstance(n_episodes, int) or n_episodes < 1:
        raise ValueError(f"n_episodes must be a positive whole number; got {n_episodes!r}.")
    from cqsm.rl.runs import load_run

    settings, env, agent = load_run(run_dir)
    step = int(results.load_checkpoint(run_dir / "policy.pt", weights_only=True)["step"])
    interval = interval_of(env)
    box = env.unwrapped.action_space
    applied: list = []
    returns = evaluate(agent, env, n_episodes, settings.seed, step=step, episode_actions=applied)
    env.close()
    rows = []
    for i, (actions, ret) in enumerate(zip(applied, returns, strict=True)):
        measured = action_smoothness(np.array(actions), interval.dt, box.low, box.high, face_tol)
        per_coord = measured.pop("at_face_per_coord")
        rows.append(
            {
                "algo": settings.algo,
                "env": settings.env,
                "seed": settings.seed,
                "dt": interval.dt,
                "native_dt": interval.native_dt,
                "episode": i,
                **measured,
                "at_face_per_coord": " ".join(f"{v:.6g}" for v in per_coord),
                "eval_return": float(ret),
                "policy_step": step,
                "start_seed": episode_seed(settings.seed, i),
                "run": results.portable(run_dir),
            }
        )
    return rows


def write_smoothness(
    path,
    run_dirs,
    n_episodes: int = 1,
    face_tol: float = FACE_TOL,
    redo: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """:func:`run_smoothness` of every run among ``run_dirs``, written to the CSV file ``path``
    (sorted by algo, env, dt, seed and episode) with its provenance beside it
    (``<name>.provenance.json``), atomically after each run; returns the table.

    The provenance keeps one entry per call that measured something, under ``measurements``:
    where and with what it measured (:func:`cqsm.rl.results.provenance`: commit, versions,
    machine), ``n_episodes``, ``face_tol``, ``wall_time`` and the ``runs`` it measured, so a
    table measured in several sittings, on several machines, says which rows came from where
    (:func:`measured_where`).

    Resumable: a run whose rows are already in ``path`` (the same ``run``) is kept as it is and
    not measured again unless ``redo``. A folder without ``policy.pt`` raises a
    :class:`cqsm.rl.results.RunError` before anything is measured.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    run_dirs = [Path(p) for p in run_dirs]
    missing = [str(p) for p in run_dirs if not (p / "policy.pt").exists()]
    if missing:
        raise results.RunError(
            f"No policy.pt (unfinished runs, or not run folders): {', '.join(missing)}."
        )
    kept = pd.read_csv(path) if path.exists() and not redo else pd.DataFrame(columns=COLUMNS)
    if list(kept.columns) != list(COLUMNS):
        raise results.RunError(
            f"{path} holds other columns than a smoothness table's; move it away or pass redo=True."
        )
    names = [results.portable(p) for p in run_dirs]
    todo = [(p, n) for p, n in zip(run_dirs, names, strict=True) if n not in set(kept["run"])]
    # the earlier sittings, each with the runs of it the table keeps (none left: dropped)
    still_kept = set(kept["run"])
    earlier = [
        m | {"runs": [r for r in m["runs"] if r in still_kept]}
        for m in (_measurements(path) if len(kept) else [])
    ]
    earlier = [m for m in earlier if m["runs"]]
    start, done = time.perf_counter(), []
    # where it measures, read before the table is written (the table's own change is no
    # change of the code that measured it)
    where = results.provenance(n_episodes=n_episodes, face_tol=face_tol)

    def write(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.sort_values(
            ["algo", "env", "dt", "seed", "episode"], kind="stable", ignore_index=True
        )
        atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
        this = where | {"wall_time": time.perf_counter() - start, "runs": done}
        results.write_json(_provenance_path(path), {"measurements": [*earlier, this]})
        return frame

    table = kept
    for run_dir, name in tqdm(todo, desc="smoothness", unit="run", disable=not progress):
        rows = pd.DataFrame(run_smoothness(run_dir, n_episodes, face_tol), columns=COLUMNS)
        done.append(name)
        table = write(pd.concat([table, rows], ignore_index=True) if len(table) else rows)
    return write(table) if not todo and not path.exists() else table


def _provenance_path(path) -> Path:
    return Path(path).with_suffix(".provenance.json")


def _measurements(path) -> list[dict]:
    """The ``measurements`` of a smoothness table's provenance (none without one)."""
    where = _provenance_path(path)
    if not where.exists():
        return []
    made = results.read_json(where)
    if "measurements" not in made:
        raise results.RunError(
            f"{where} is not a smoothness provenance (no 'measurements'); "
            "move it away and measure again."
        )
    return made["measurements"]


def measured_where(path) -> pd.DataFrame:
    """Which measurement of the smoothness table ``path`` made each of its runs: one row per
    run, ``run``, ``measurement`` (its index in the provenance's ``measurements``), ``commit``,
    ``cpu``, ``cpu_capability`` and ``platform`` ("" where that sitting did not record it)."""
    rows = []
    for i, made in enumerate(_measurements(path)):
        machine = made.get("machine", {})
        for run in made["runs"]:
            rows.append(
                {
                    "run": run,
                    "measurement": i,
                    "commit": made.get("git", {}).get("commit", ""),
                    "cpu": machine.get("cpu", ""),
                    "cpu_capability": machine.get("cpu_capability", ""),
                    "platform": machine.get("platform", ""),
                }
            )
    columns = ["run", "measurement", "commit", "cpu", "cpu_capability", "platform"]
    return pd.DataFrame(rows, columns=columns)


def smoothness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """A smoothness table (:data:`COLUMNS`) per algorithm, task and control interval (``dt``,
    seconds): ``runs`` (seeds), ``episodes``, the means over all their episodes of ``rms_rate``
    (action units per second), ``at_face`` (fraction of steps with a coordinate at a face),
    ``at_face_coord_mean`` (fraction of coordinate-steps at a face) and ``eval_return``,
    ``coordinates`` (of the action) and ``trained`` (the policies' training in the env's
    native steps' worth of simulated time: ``policy_step dt / native_dt``; the largest where
    the runs differ)."""
    trained = (table["policy_step"] * table["dt"] / table["native_dt"]).round()
    coordinates = table["at_face_per_coord"].astype(str).str.split().str.len()
    grouped = table.assign(trained=trained, coordinates=coordinates).groupby(
        ["algo", "env", "dt"], sort=True
    )
    return grouped.agg(
        runs=("run", "nunique"),
        episodes=("episode", "size"),
        coordinates=("coordinates", "max"),
        rms_rate=("rms_rate", "mean"),
        at_face=("at_face", "mean"),
        at_face_coord_mean=("at_face_coord_mean", "mean"),
        eval_return=("eval_return", "mean"),
        trained=("trained", "max"),
    ).astype({"trained": int})


def _runs(table: pd.DataFrame, root):
    """``(run, its folder, its episodes)`` for each run of a smoothness table, the ``run``
    paths taken relative to ``root`` (default: the repository)."""
    root = Path(root) if root is not None else results.repository_root() or Path.cwd()
    for run, episodes in table.groupby("run", sort=True):
        yield run, Path(run) if Path(run).is_absolute() else root / run, episodes


def logged_agreement(table: pd.DataFrame, root=None) -> pd.DataFrame:
    """Each run of a smoothness table against what its training logged: the mean return of its
    first ``n_eval`` measured episodes (the run's own number of evaluation episodes, from its
    ``settings.json``), which are the episodes of its last evaluation, beside the
    ``eval_return`` of its ``results.csv`` at the policy's step, and ``difference``, their
    relative difference (0 when the measurement reproduces the log), and where the run was
    trained (``commit``, ``platform`` and ``cpu`` from its ``provenance.json``; "" without
    one). ``root``
    is the folder the ``run`` paths are relative to (default: the repository). Runs with fewer
    measured episodes than ``n_eval``, or no row at that step, get NaN."""
    out = []
    for run, run_dir, episodes in _runs(table, root):
        n_eval = int(results.read_json(run_dir / "settings.json")["n_eval"])
        step = int(episodes["policy_step"].iloc[0])
        logged = pd.read_csv(run_dir / "results.csv")
        logged = logged.loc[logged["step"] == step, "eval_return"]
        first = episodes.sort_values("episode")["eval_return"].to_numpy()[:n_eval]
        measured = first.mean() if len(first) == n_eval else math.nan
        value = float(logged.iloc[0]) if len(logged) else math.nan
        made = run_dir / "provenance.json"
        made = results.read_json(made) if made.exists() else {}
        out.append(
            {
                "run": run,
                "algo": episodes["algo"].iloc[0],
                "env": episodes["env"].iloc[0],
                "seed": int(episodes["seed"].iloc[0]),
                "dt": float(episodes["dt"].iloc[0]),
                "policy_step": step,
                "measured": measured,
                "logged": value,
                "difference": (measured - value) / abs(value) if value else math.nan,
                "commit": made.get("git", {}).get("commit", ""),
                "platform": made.get("machine", {}).get("platform", ""),
                "cpu": made.get("machine", {}).get("cpu", ""),
            }
        )
    return pd.DataFrame(out)


def price_of_speed(table: pd.DataFrame, reference: str, root=None) -> pd.DataFrame:
    """What a CQSM run's price on action speed costs: per run of a smoothness table of CQSM
    runs (one folder per arm: the arm is the run folder's parent), its ``lam`` (from its
    ``settings.json``), the mean squared action rate over its episodes (``mean_sq_rate``; in
    evaluation the action moves by the score alone, so it is the mean of ``|Psi|^2``), the
    penalty per second ``lam/2 mean_sq_rate``, its ``share`` of the reward, the penalty's
    integral over the measured episodes over the reward's (``eval_return`` is in native units,
    so the reward's integral is ``eval_return * native_dt``; NaN where the reward is not
    positive), and ``rate_vs_reference``, the mean squared rate over that of the ``reference``
    arm on the same task (NaN without one). ``root`` as in :func:`logged_agreement`."""
    out = []
    for run, run_dir, episodes in _runs(table, root):
        lam = float(results.read_json(run_dir / "settings.json")["agent"]["lam"])
        seconds = (episodes["steps"] - 1) * episodes["dt"]
        penalty = (0.5 * lam * episodes["mean_sq_rate"] * seconds).sum()
        reward = (episodes["eval_return"] * episodes["native_dt"]).sum()
        out.append(
            {
                "arm": run_dir.parent.name,
                "env": episodes["env"].iloc[0],
                "run": run,
                "lam": lam,
                "mean_sq_rate": float(episodes["mean_sq_rate"].mean()),
                "penalty_per_second": 0.5 * lam * float(episodes["mean_sq_rate"].mean()),
                "share": penalty / reward if reward > 0 else math.nan,
            }
        )
    out = pd.DataFrame(out)
    own = out.set_index(["env", "arm"])["mean_sq_rate"]
    base = [own.get((env, reference), math.nan) for env in out["env"]]
    return out.assign(rate_vs_reference=out["mean_sq_rate"] / base)
