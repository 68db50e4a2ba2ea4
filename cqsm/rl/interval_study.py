"""The control-interval study (chapter "What continuous time buys"): its grid, runs and tables.

    runs = per_step_runs(seeds=(0, 1, 2), out=...)    # TD3 and SAC as practitioners run them
    arms = screen("HalfCheetah-v5")                   # CQSM's candidate settings, physical units
    cells = grid_returns(rows, native_rows)           # one row per run: its return at the budget
    interval_table(cells)                             # per task, method and interval

**The grid.** :data:`GRID` holds each task's control intervals, its own among them. Off the native
interval a run's budget is fixed in simulated seconds, :data:`BUDGET_STEPS` native steps' worth
(2,500 s on HalfCheetah-v5, 400 s on Hopper-v5), with one agent update per native step's worth
of simulated time at every interval, so that every cell costs about the same compute; it is
evaluated every :data:`EVAL_STEPS` native steps' worth. At the native interval the cells are the
100k-step runs of chapter 7, read at the same budget (their evaluation at 50k steps).

**Per-step baselines** (:func:`per_step_runs`) keep every per-step constant of their defaults and
presets (the discount 0.99 per step, the exploration noise per step, the warm-up in steps).

**Time-aware TD3 and SAC** (:func:`time_aware`, after Tallec, Blier and Ollivier 2019) turn each
per-step constant into physical time from the env's own interval ``T``: the discount
``gamma = e^{-beta dt}`` with ``beta = -ln(0.99) / T``, each exploration noise draw (TD3's added
Gaussian, SAC's policy noise in the actions it trains on) and each warm-up draw held for ``T``
seconds, and the warm-up as long in seconds as the algorithm's in native steps. At the native
interval each is the algorithm itself, so its native cell is the algorithm's.

**CQSM's candidates** (:func:`screen`, by :func:`cqsm.rl.presets.physical`) are set in
physical units from the env's own interval ``T``, action box and time limit, properties of the
task that do not change with the control interval: the relaxation time ``k T``, integrated
exactly, a noise of 0.1 box half-widths per ``sqrt(T)``, the discount rate ``-ln(0.99) / T``, a
price on the lag between the score's target and the action, ``lam = c tau^2 / h^2`` (the running
penalty is then ``(c/2)|g - a|^2 / h^2`` per second at any interval), a warm-up of whole time
limits in seconds, and each warm-up draw held for ``T``. The one chosen is
:data:`cqsm.rl.presets.PHYSICAL`, ``cqsm train``'s default.
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cqsm.rl import results
from cqsm.rl.compare import bootstrap_ci, label
from cqsm.rl.envs import resolve_interval
from cqsm.rl.presets import PHYSICAL, physical
from cqsm.rl.study import Variant
from cqsm.rl.train import TrainSettings, budget_twin

__all__ = [
    "GRID",
    "BUDGET_STEPS",
    "EVAL_STEPS",
    "native_dt",
    "budget_seconds",
    "grid_settings",
    "per_step_runs",
    "cqsm_runs",
    "native_runs",
    "METHODS",
    "cell_settings",
    "read_grid",
    "time_aware",
    "time_aware_runs",
    "TIME_AWARE",
    "by_method",
    "every_step_runs",
    "EVERY_STEP",
    "PROBES",
    "probe_runs",
    "beside_runs",
    "method_of",
    "progress",
    "SAME_AT_NATIVE",
    "screen",
    "screen_knobs",
    "screen_choice",
    "grid_returns",
    "interval_table",
    "shares_beside",
    "BAND",
    "straddles",
    "open_cells",
    "further_runs",
    "compounded_noise",
    "LATE",
    "SIGNALS",
    "late_training",
    "probe_table",
]

GRID = {
    "HalfCheetah-v5": (0.01, 0.02, 0.05, 0.1),
    "Hopper-v5": (0.002, 0.004, 0.008, 0.016),
}
"""The control intervals of each task, seconds (frame skip 1, 2, 5, 10 and 1, 2, 4, 8)."""

BUDGET_STEPS = 50_000
"""The budget off the native interval, in native steps' worth of simulated time."""

EVAL_STEPS = 5_000
"""Evaluations every this many native steps' worth of simulated time."""

_CHECKPOINT_STEPS = 10_000


def native_dt(env: str) -> float:
    """The env's own control interval, seconds."""
    return resolve_interval(env).dt


def budget_seconds(env: str, budget_steps: int = BUDGET_STEPS) -> float:
    """The grid's budget on ``env`` in simulated seconds (``budget_steps`` native steps'
    worth; a smaller one makes a quick check of the code)."""
    return budget_steps * native_dt(env)


def grid_settings(
    env: str,
    algo: str,
    dt: float,
    seed: int,
    out: str,
    agent: dict | None = None,
    budget_steps: int = BUDGET_STEPS,
    **loop,
) -> TrainSettings:
    """One cell's run off the native interval: the budget in simulated seconds and one update per
    native step's worth of it, on the task's presets with ``agent`` and ``loop`` on top (``loop``
    may replace the cell's own loop settings too)."""
    native = native_dt(env)
    cell = {
        "total_seconds": budget_seconds(env, budget_steps),
        "updates_per_second": 1 / native,
        "eval_every_seconds": EVAL_STEPS * native,
        "checkpoint_every_seconds": _CHECKPOINT_STEPS * native,
    }
    return TrainSettings.for_task(
        env,
        algo=algo,
        agent=agent,
        seed=seed,
        control_interval=dt,
        out=out,
        **(cell | loop),
    )


def _off_native(seeds):
    """``(seed, env, dt)`` of every cell off the native interval: seeds in rounds (a grid cut
    short stays balanced), the extreme intervals of each task first."""
    for seed in seeds:
        for env, intervals in GRID.items():
            off = [dt for dt in intervals if not math.isclose(dt, native_dt(env))]
            for dt in [off[0], off[-1], *off[1:-1]]:
                yield seed, env, dt


METHODS = {
    "td3": ("per-step", "TD3", "td3"),
    "sac": ("per-step", "SAC", "sac"),
    "cqsm": ("cqsm", "CQSM", "cqsm"),
    "time-aware": ("time-aware", "TD3, time-aware", "td3"),
    "time-aware-sac": ("time-aware-sac", "SAC, time-aware", "sac"),
    "every-step": ("every-step", "TD3, an update per step", "td3"),
    "cqsm-every-step": ("cqsm-every-step", "CQSM, an update per step", "cqsm"),
    "span": ("span", "CQSM, span T", "cqsm"),
    "target-rate": ("target-rate", "CQSM, τ per T", "cqsm"),
    "smoothing": ("smoothing", "CQSM, smoothing as at T", "cqsm"),
}
"""The grid's methods: the folder of their runs off the native interval (under the study's
folder), their name in tables and figures, and their algorithm. At the native interval TD3's
and SAC's cells are chapter 7's runs, CQSM's are in ``native``, and time-aware TD3 and TD3 with
an update per step are TD3 itself there (their native cell is TD3's), time-aware SAC is SAC and
CQSM with an update per step is CQSM's default (one update per native step there as at every
interval; off it, ``T / dt`` times the grid's updates: the updates that scale with the interval,
which the grid's equal compute rules out). ``span`` is CQSM's
default with a bootstrap span of one native interval (``bootstrap_span = T``: each critic target
follows the replayed steps of T seconds, so it looks as far ahead at every interval); at the
native interval, and wherever ``dt >= T``, it is CQSM's default itself. ``target-rate`` is CQSM's
default with target critics that move ``tau`` per T seconds (``tau_interval = T``: ``tau T / dt``
per update, so that their value advances as many seconds of horizon per update at every
interval); at the native interval it is CQSM's default itself. ``smoothing`` is CQSM's default
with its target smoothing set at T (``target_noise_interval = T``: each target's smoothed next
action is the next target's action argument, so the smoothings compound along the action's
relaxation, to a variance that grows as the interval shrinks; the probe sets the smoothing at
``dt`` so that it compounds to the same variance as at T); at the native interval it is CQSM's
default itself."""

PROBES = {
    "span": "bootstrap_span",
    "target-rate": "tau_interval",
    "smoothing": "target_noise_interval",
}
"""CQSM's probes beside the grid: the method, and the setting of CQSM's that it sets to the
env's own interval ``T`` on top of the default (a setting that does nothing at ``T``)."""

SAME_AT_NATIVE = {
    "time-aware": "td3",
    "time-aware-sac": "sac",
    "every-step": "td3",
    "cqsm-every-step": "cqsm",
    "span": "cqsm",
    "target-rate": "cqsm",
    "smoothing": "cqsm",
}
"""The methods that are another method at the native interval, and that method."""


def cell_settings(
    method: str,
    env: str,
    dt: float,
    seed: int,
    out: str,
    budget_steps: int = BUDGET_STEPS,
    **loop,
) -> TrainSettings:
    """One run of ``method`` (a key of :data:`METHODS`) at ``dt`` seconds, into ``out``;
    ``loop`` replaces the cell's and the method's loop settings (a budget in steps replaces
    one in seconds)."""
    if method not in METHODS:
        raise ValueError(f"Unknown method {method!r} of the grid; choose one of {list(METHODS)}.")
    algo, agent, own = METHODS[method][2], None, {}
    if method in TIME_AWARE.values():
        agent, own = time_aware(env, dt, algo)
    elif method in EVERY_STEP.values():
        own = {"updates_per_second": 1 / dt}
    elif method in PROBES:
        agent = {PROBES[method]: native_dt(env)}
    own = {k: v for k, v in own.items() if budget_twin(k) not in loop}  # loop's budget wins
    return grid_settings(env, algo, dt, seed, out, agent, budget_steps, **(own | loop))


def read_grid(root, native, envs=tuple(GRID), algos=("td3", "sac")):
    """The grid's committed rows as ``(rows, native_rows)`` for :func:`grid_returns`, with a
    ``variant`` column naming each run's method (:data:`METHODS`): ``rows`` off the native
    interval from each method's folder under ``root``; ``native_rows`` from chapter 7's folder
    ``native`` (a sub-folder per algorithm of ``algos``), CQSM's from ``root/native`` (or, for a
    seed not there yet, the screen's run of the chosen arm: the same settings for 50k steps),
    and again under the name of each method of :data:`SAME_AT_NATIVE` with runs (its
    native cell is that method's)."""
    root, envs = Path(root), list(envs)

    def read(folder, method):
        _, name, algo = METHODS[method]
        found = results.read_runs(folder, algo=algo, env=envs)
        return [found.assign(variant=name)] if len(found) else []

    rows, native_rows = [], []
    for method in (*algos, "cqsm", *SAME_AT_NATIVE):
        rows += read(root / METHODS[method][0], method)
    for algo in algos:
        native_rows += read(Path(native) / algo, algo)
    native_rows += _cqsm_native(root, envs)
    names = {frame.variant.iloc[0] for frame in rows}
    for method, same in SAME_AT_NATIVE.items():
        if METHODS[method][1] not in names:
            continue
        if same == "cqsm":
            native_rows += [f.assign(variant=METHODS[method][1]) for f in _cqsm_native(root, envs)]
        elif same in algos:
            native_rows += read(Path(native) / same, method)
    empty = pd.DataFrame()
    return (
        pd.concat(rows, ignore_index=True) if rows else empty,
        pd.concat(native_rows, ignore_index=True) if native_rows else empty,
    )


def _cqsm_native(root: Path, envs: list[str]) -> list[pd.DataFrame]:
    """CQSM's native rows: ``root/native``'s runs, and the chosen screen arm's for the seeds of
    each task that ``root/native`` does not have yet (the same settings, half the budget: the
    same run as seed 0's native run only where both ran on one machine)."""
    _, name, algo = METHODS["cqsm"]
    found = results.read_runs(root / "native", algo=algo, env=envs)
    chosen = next(arm for arm, _, _ in _SCREEN if screen_knobs(arm) == PHYSICAL)
    screened = results.read_runs(root / "screen" / chosen, algo=algo, env=envs)
    if len(found) and len(screened):
        have = set(zip(found["env"], found["seed"], strict=True))
        pairs = zip(screened["env"], screened["seed"], strict=True)
        screened = screened[[pair not in have for pair in pairs]]
    frames = [f.assign(variant=name) for f in (found, screened) if len(f)]
    return [pd.concat(frames, ignore_index=True)] if frames else []


def per_step_runs(seeds=(0, 1, 2), out: str = "per-step", algos=("td3", "sac")) -> list:
    """TD3's and SAC's cells off the native interval, as practitioners run them: seeds in
    rounds (a grid cut short stays balanced), the extreme intervals of each task first."""
    return [
        cell_settings(algo, env, dt, seed, out)
        for seed, env, dt in _off_native(seeds)
        for algo in algos
    ]


def cqsm_runs(seeds=(0, 1, 2), out: str = "cqsm") -> list:
    """CQSM's cells off the native interval with ``cqsm train``'s one default
    (:data:`cqsm.rl.presets.PHYSICAL`), unchanged across intervals: each task's extreme
    intervals for every seed first, then the others."""
    cells = list(_off_native(seeds))
    extreme = {env: (min(dts), max(dts)) for env, dts in GRID.items()}
    first = [c for c in cells if c[2] in extreme[c[1]]]
    return [
        cell_settings("cqsm", env, dt, seed, out)
        for seed, env, dt in first + [c for c in cells if c not in first]
    ]


def native_runs(algo: str = "cqsm", seeds=(0, 1, 2), out: str = "native") -> list:
    """The native cells of an algorithm that chapter 7 did not run: ``cqsm train``'s defaults
    at each task's own interval for chapter 7's 100k steps (read at the grid's budget)."""
    return [
        TrainSettings.for_task(env, algo=algo, seed=seed, total_steps=2 * BUDGET_STEPS, out=out)
        for seed in seeds
        for env in GRID
    ]


TIME_AWARE = {"td3": "time-aware", "sac": "time-aware-sac"}
"""The time-aware method of each algorithm that has one (a key of :data:`METHODS`)."""

_HOLD = {"td3": "expl_noise_hold", "sac": "noise_hold"}  # each algorithm's held noise


def time_aware(env: str, dt: float, algo: str = "td3") -> tuple[dict, dict]:
    """Time-aware TD3's or SAC's agent and loop settings on ``env`` at a control interval of
    ``dt`` seconds: every per-step constant of the algorithm's defaults and presets in physical
    time (the discount per second of ``gamma = 0.99`` per native step, the exploration's draws
    held for the native interval, the warm-up's length and hold in seconds)."""
    if algo not in _HOLD:
        raise ValueError(f"No time-aware rule for {algo!r}; choose one of {list(_HOLD)}.")
    native = native_dt(env)
    steps = TrainSettings.for_task(env, algo=algo).learning_starts  # at the native interval
    agent = {"gamma": 0.99 ** (dt / native), _HOLD[algo]: native}
    return agent, {"learning_starts_seconds": steps * native, "warmup_hold": native}


def time_aware_runs(seeds=(0, 1, 2), out: str | None = None, algo: str = "td3") -> list:
    """Time-aware TD3's (or SAC's) cells off the native interval, in the order of
    :func:`per_step_runs`, into ``out`` (default: the method's folder name)."""
    method = TIME_AWARE[algo]
    out = out or METHODS[method][0]
    return [cell_settings(method, env, dt, seed, out) for seed, env, dt in _off_native(seeds)]


EVERY_STEP = {"td3": "every-step", "cqsm": "cqsm-every-step"}
"""The method with one update per control step of each algorithm that has one."""


def every_step_runs(seeds=(0, 1, 2), out: str | None = None, algo: str = "td3") -> list:
    """TD3 (or CQSM's default) at each task's finest interval with one update per control
    step, into ``out`` (default: the method's folder name): as practitioners who shorten the
    interval often run TD3, and the updates that scale with ``T / dt`` for CQSM; it tells the
    updates' share of what is lost there."""
    method = EVERY_STEP[algo]
    return [
        cell_settings(method, env, min(dts), seed, out or METHODS[method][0])
        for seed in seeds
        for env, dts in GRID.items()
    ]


def probe_runs(method: str, seeds=(0,), out: str | None = None) -> list:
    """A probe of :data:`PROBES` at each task's intervals shorter than its own, the finest
    first, into ``out`` (the method's folder name by default)."""
    if method not in PROBES:
        raise ValueError(f"Unknown probe {method!r}; choose one of {list(PROBES)}.")
    return [
        cell_settings(method, env, dt, seed, out or METHODS[method][0])
        for seed in seeds
        for env, dts in GRID.items()
        for dt in sorted(dts)
        if dt < native_dt(env) - 1e-12
    ]


_SCREEN = (
    ("exact", {}, "chapter 8's recipe with the exact relaxation (lam = 1e-6)"),
    ("lag0.1", {"lag_price": 0.1}, "exact + a price of 0.1 per unit of lag squared"),
    ("lag1", {"lag_price": 1.0}, "exact + a price of 1 per unit of lag squared"),
    (
        "lag0.1-fast",
        {"lag_price": 0.1, "relaxation_intervals": 0.25},
        "lag0.1 with a relaxation time of a quarter of the native interval (exact, so no "
        "interval overshoots)",
    ),
    (
        "lag0.1-sm",
        {"lag_price": 0.1, "actor": "score_matching"},
        "lag0.1 with Q-score matching instead of the Feynman-Kac update",
    ),
    (
        "lag1-short",
        {"lag_price": 1.0, "warmup_limits": 2.0},
        "lag1 (the best of the first five on Hopper-v5, where they differ most) with a "
        "warm-up of two time limits",
    ),
)


_SCREEN_BY_NAME = {name: knobs for name, knobs, _ in _SCREEN}


def screen_knobs(name: str) -> dict:
    """The arguments of :func:`cqsm.rl.presets.physical` that make the screen's arm ``name``,
    every one given (its defaults filled in): the form of :data:`cqsm.rl.presets.PHYSICAL`."""
    given = inspect.signature(physical).parameters.values()
    defaults = {p.name: p.default for p in given if p.default is not inspect.Parameter.empty}
    return defaults | _SCREEN_BY_NAME[name]


def screen_choice(
    at_steps: pd.DataFrame,
    cost: pd.DataFrame,
    arms,
    step: int = BUDGET_STEPS,
    reference: str = "td3",
    bound: float = 0.9,
) -> pd.DataFrame:
    """The screen's rule for the one setting, as a table of its ``arms`` (their names; index
    ``arm``), the chosen first. An arm is ``priced`` where its price shapes the policy on every
    task: its mean squared action rate at most ``bound`` times the unpriced arm's (``cost`` of
    :func:`cqsm.rl.smoothness.price_of_speed`, ``rate_vs_reference``). Priced arms rank above
    the others, and within each group by ``mean share``, the mean over tasks of the arm's return
    at ``step`` (``at_steps`` of :func:`cqsm.rl.compare.returns_at`, algo = arm name) as a share
    of ``reference``'s mean there. An arm with several runs on a task counts their mean."""
    means = at_steps[at_steps["step"] == step].set_index(["env", "algo"])["mean"]
    envs = sorted(set(cost["env"]))
    rows = []
    cost = cost[cost["arm"].isin(list(arms))]
    for arm, group in cost.groupby("arm", sort=False):
        rate = group.groupby("env")["rate_vs_reference"].mean()
        shares = {
            f"share {env}": means.get((env, arm), np.nan) / means.get((env, reference), np.nan)
            for env in envs
        }
        rows.append(
            {
                "arm": arm,
                **shares,
                "mean share": float(np.mean(list(shares.values()))),
                "priced": bool(all(rate.get(env, np.nan) <= bound for env in envs)),
            }
        )
    table = pd.DataFrame(rows).set_index("arm")
    return table.sort_values(["priced", "mean share"], ascending=False)


def screen(env: str) -> tuple[Variant, ...]:
    """The capped screen of CQSM's candidates on ``env`` at its own interval (one seed each),
    on the library's defaults (``task_presets=False``)."""
    arms = []
    for name, knobs, note in _SCREEN:
        agent, loop = physical(env, **knobs)
        arms.append(Variant(name, agent, loop, note=note, task_presets=False))
    return tuple(arms)


def grid_returns(
    rows: pd.DataFrame, native_rows: pd.DataFrame | None = None, budget_steps: int = BUDGET_STEPS
) -> pd.DataFrame:
    """One row per run of the grid: its evaluation at the budget (``return``), the mean of its
    evaluations over the last fifth of the budget's simulated time (``return_late``: less
    noisy than one evaluation, where the learning curves swing), and its evaluations at 10k
    and 20k native steps' worth of simulated time (``return_10k``, ``return_20k``).

    ``rows`` are the runs off the native interval (their last evaluation is at the budget);
    ``native_rows`` the longer runs at the native interval, read at the budget. A run that has
    not reached the budget is left out. ``method`` is the algorithm's display name, or the
    ``variant`` column where there is one.
    """
    rows = _together(rows, native_rows)
    methods = _methods(rows)
    out = []
    for (method, env, seed, dt), run in rows.groupby(
        [methods, "env", "seed", _interval(rows)], sort=False
    ):
        algo = run["algo"].iloc[0]
        native = native_dt(env)
        budget = budget_seconds(env, budget_steps)

        def at(seconds, run=run):
            hit = run.loc[np.isclose(run["sim_time"], seconds), "eval_return"]
            return float(hit.iloc[0]) if len(hit) else np.nan

        final = at(budget)
        if np.isnan(final):
            continue
        late = _last_part(run, budget, LATE)
        out.append(
            {
                "env": env,
                "method": method,
                "algo": algo,
                "dt": dt,
                "native": bool(np.isclose(dt, native)),
                "seed": int(seed),
                "return": final,
                "return_late": float(late["eval_return"].mean()),
                "return_10k": at(10_000 * native),
                "return_20k": at(20_000 * native),
            }
        )
    return pd.DataFrame(out)


LATE = 0.2
"""The share of the budget at its end over which a run's late rows are read (``return_late``
of :func:`grid_returns`, :func:`late_training`'s default)."""


def _last_part(run: pd.DataFrame, budget: float, last: float) -> pd.DataFrame:
    """The rows of ``run`` in the last ``last`` of a budget of ``budget`` simulated seconds:
    after ``(1 - last) * budget`` (a row there belongs to the earlier part), up to the budget
    (a run read at a shorter budget than its own)."""
    times = run["sim_time"]
    return run[(times > budget * (1 - last) * (1 + 1e-9)) & (times <= budget * (1 + 1e-9))]


def _together(rows: pd.DataFrame, native_rows: pd.DataFrame | None) -> pd.DataFrame:
    """The runs off the native interval and the native ones, as one frame."""
    frames = [rows] + ([native_rows] if native_rows is not None and len(native_rows) else [])
    return pd.concat(frames, ignore_index=True)


def _methods(rows: pd.DataFrame) -> pd.Series:
    """Each row's method: its ``variant`` where there is one, else its algorithm's name."""
    named = rows["algo"].map(label)
    return rows["variant"].fillna(named) if "variant" in rows else named


def _interval(rows: pd.DataFrame) -> pd.Series:
    """Each row's control interval, seconds: ``sim_time / step``, rounded to the microsecond."""
    return (rows["sim_time"] / rows["step"]).round(6).rename("dt")


def interval_table(cells: pd.DataFrame, y: str = "return", level: float = 0.95) -> pd.DataFrame:
    """Per task, method and interval: seeds, mean and standard deviation of ``y`` across seeds,
    the bootstrap interval of the mean, and the ratio of the mean to the same method's mean at
    the native interval with a bootstrap interval of that ratio (seeds resampled in both cells;
    NaN where the method has no native cell)."""
    out = []
    for (env, method), group in cells.groupby(["env", "method"], sort=False):
        native = group.loc[group["native"], y].to_numpy()
        for dt, cell in group.groupby("dt"):
            values = cell[y].to_numpy()
            low, high = bootstrap_ci(values, level)
            ratio, r_low, r_high = _ratio(values, native, level)
            out.append(
                {
                    "env": env,
                    "method": method,
                    "dt": dt,
                    "seeds": values.size,
                    "mean": values.mean(),
                    "std": values.std(ddof=1) if values.size > 1 else np.nan,
                    "ci_low": low,
                    "ci_high": high,
                    "ratio": ratio,
                    "ratio_low": r_low,
                    "ratio_high": r_high,
                }
            )
    return pd.DataFrame(out).sort_values(["env", "method", "dt"], ignore_index=True)


def _ratio(values, native, level, n_resamples: int = 10_000, seed: int = 0):
    """The ratio of the means of ``values`` and ``native``, and its percentile bootstrap
    interval (each sample resampled on its own)."""
    if native.size == 0 or native.mean() == 0:
        return np.nan, np.nan, np.nan
    rng = np.random.default_rng(seed)
    top = values[rng.integers(0, values.size, (n_resamples, values.size))].mean(1)
    bottom = native[rng.integers(0, native.size, (n_resamples, native.size))].mean(1)
    tail = (1 - level) / 2
    low, high = np.quantile(top / bottom, [tail, 1 - tail])
    return values.mean() / native.mean(), float(low), float(high)


def shares_beside(table: pd.DataFrame, method: str, reference: str) -> pd.DataFrame:
    """``method``'s share of its native return beside ``reference``'s, per task and interval
    off the native one where both have a cell in ``table`` (:func:`interval_table`; methods by
    their display names, such as ``"TD3, time-aware"`` beside ``"TD3"``).

    Columns: ``env``, ``dt``, ``seeds`` and ``reference_seeds``, ``ratio`` with ``ratio_low``
    and ``ratio_high`` (``method``'s share and its interval), the same three for ``reference``
    (``reference_ratio``, ...), and ``gain``, the difference of the two shares (positive:
    ``method`` keeps more of its native return)."""
    keys = ["env", "dt"]
    kept = ["seeds", "ratio", "ratio_low", "ratio_high"]
    mine = table[(table["method"] == method) & (table["ratio"].notna())]
    theirs = table[(table["method"] == reference) & (table["ratio"].notna())]
    native = [np.isclose(dt, native_dt(env)) for env, dt in zip(mine.env, mine.dt, strict=True)]
    mine = mine[~np.asarray(native, dtype=bool)]
    both = mine[keys + kept].merge(
        theirs[keys + kept].rename(columns={k: f"reference_{k}" for k in kept}), on=keys
    )
    both["gain"] = both["ratio"] - both["reference_ratio"]
    return both.sort_values(keys, ignore_index=True)


BAND = 0.1
"""The robustness target's band: CQSM's return at the budget within 10% of its native one."""


def straddles(low: float, high: float, band: float = BAND) -> bool:
    """Whether the interval ``[low, high]`` of a share of the native return leaves the target
    open: it reaches into ``[1 - band, 1 + band]`` without lying wholly inside it."""
    inside = low >= 1 - band and high <= 1 + band
    return bool(low <= 1 + band and high >= 1 - band and not inside)


def open_cells(cells: pd.DataFrame, first=(0, 1, 2), band: float = BAND) -> list:
    """CQSM's ``(env, dt)`` cells off the native interval whose share of the native return,
    read from the seeds ``first`` alone, has a bootstrap interval that :func:`straddles` the
    band. ``cells``: :func:`grid_returns`'s rows."""
    name = METHODS["cqsm"][1]
    mine = cells[(cells["method"] == name) & cells["seed"].isin(first)] if len(cells) else cells
    table = interval_table(mine) if len(mine) else pd.DataFrame()
    return [
        (r.env, r.dt)
        for r in table.itertuples()
        if not np.isclose(r.dt, native_dt(r.env)) and straddles(r.ratio_low, r.ratio_high, band)
    ]


def further_runs(
    cells: pd.DataFrame, here=".", seeds=(3, 4), first=(0, 1, 2), band: float = BAND
) -> list:
    """CQSM's seeds ``seeds`` where its first seeds ``first`` leave the robustness target
    open: at each of :func:`open_cells`, and at the native interval of each task with such a
    cell (the share's other cell), into ``here``'s ``cqsm`` and ``native`` folders. The cells
    are read from ``first``'s seeds alone, so the plan stays what it was once the further
    seeds have run."""
    folder, _, algo = METHODS["cqsm"]
    opened = open_cells(cells, first, band)
    here, tasks = Path(here), list(dict.fromkeys(env for env, _ in opened))
    runs = []
    for seed in seeds:  # in rounds: every open cell's seed before the next seed
        runs += [cell_settings("cqsm", env, dt, seed, str(here / folder)) for env, dt in opened]
        runs += [r for r in native_runs(algo, (seed,), str(here / "native")) if r.env in tasks]
    return runs


def compounded_noise(env: str, intervals=None) -> pd.DataFrame:
    """What the critic of CQSM's default evaluates on ``env`` at each of ``intervals`` (the
    task's grid by default), in half-widths of the action box: the target smoothing's standard
    deviation per step, ``smoothing``, and what it compounds to along the relaxation,
    ``compounded`` (``sd / sqrt(1 - rho^2)``, :func:`cqsm.rl.agents.cqsm.smoothing_scale`);
    the same for the ``smoothing`` probe (``probe``, ``probe_compounded``, the native
    interval's at every interval); and the action process's own noise per step,
    ``sigma_a sqrt(dt)``, and compounded, ``action_noise`` and ``action_compounded``."""
    from cqsm.rl.agents.cqsm import smoothing_scale, spread
    from cqsm.rl.presets import half_width

    agent = TrainSettings.for_task(env, algo="cqsm").agent
    native, h = native_dt(env), half_width(env)
    out = []
    for dt in GRID[env] if intervals is None else intervals:
        left = spread(dt, agent.relaxation, agent.relaxation_step)
        grow = 1 / math.sqrt(left) if left > 0 else np.inf
        scale = smoothing_scale(dt, native, agent.relaxation, agent.relaxation_step)
        smoothing, noise = agent.target_noise / h, agent.sigma_a * math.sqrt(dt) / h
        out.append(
            {
                "env": env,
                "dt": dt,
                "smoothing": smoothing,
                "compounded": smoothing * grow,
                "probe": smoothing * scale,
                "probe_compounded": smoothing * scale * grow,
                "action_noise": noise,
                "action_compounded": noise * grow,
            }
        )
    return pd.DataFrame(out)


def beside_runs(seeds=(0, 1, 2), here=".") -> list:
    """The cells planned beside the grid, each method in the folder of its name under the
    study's folder ``here``: time-aware TD3 and SAC, TD3 and CQSM with one update per control
    step, and seed 0 of each of CQSM's probes (their further seeds follow seed 0's result)."""
    here = Path(here)
    runs = []
    for algo, method in TIME_AWARE.items():
        runs += time_aware_runs(seeds, str(here / method), algo)
    for algo, method in EVERY_STEP.items():
        runs += every_step_runs(seeds, str(here / method), algo)
    for probe in PROBES:
        runs += probe_runs(probe, tuple(seeds)[:1], str(here / probe))
    return runs


_BY_FOLDER = {(folder, algo): name for folder, name, algo in METHODS.values()}
"""Each method's name by the folder of its runs and its algorithm."""


def _named(folder: str, algo: str) -> str:
    """The grid's name of a run from the folder it lies in and its algorithm (see
    :func:`by_method`)."""
    return _BY_FOLDER.get((folder, algo), METHODS[algo][1] if algo in METHODS else algo)


def method_of(settings: TrainSettings) -> str:
    """The grid's name of a planned run (:data:`METHODS`), from its ``out`` folder's name."""
    return _named(Path(settings.out).name, settings.algo)


def progress(cells: pd.DataFrame, planned) -> pd.DataFrame:
    """Per method, how far its planned runs off the native interval have come: ``planned``
    (runs), ``at budget`` (of those, the ones in ``cells``, :func:`grid_returns`'s rows) and
    ``beyond plan`` (runs in ``cells`` of the method that the plan does not hold: further seeds
    of a probe, say). ``planned``: :class:`TrainSettings` of any methods of the grid."""
    keys = {}
    for r in planned:
        if not math.isclose(r.control_interval, native_dt(r.env)):
            key = (r.env, round(r.control_interval, 6), r.seed)
            keys.setdefault(method_of(r), set()).add(key)
    off = cells[~cells["native"]] if len(cells) else pd.DataFrame()
    have = {
        method: set(zip(group["env"], group["dt"].round(6), group["seed"], strict=True))
        for method, group in (off.groupby("method") if len(off) else [])
    }
    rows = []
    for method in dict.fromkeys([*keys, *have]):
        wanted, done = keys.get(method, set()), have.get(method, set())
        rows.append(
            {
                "method": method,
                "planned": len(wanted),
                "at budget": len(done & wanted),
                "beyond plan": len(done - wanted),
            }
        )
    return pd.DataFrame(rows).set_index("method")


def by_method(table: pd.DataFrame) -> pd.DataFrame:
    """A table with a ``run`` column (a smoothness table, say) with its ``algo`` replaced by the
    name of each run's method in the grid (:data:`METHODS`), from the folder the run lies in:
    a method's folder (with the method's algorithm) gives the method's name, any other folder
    (the native cells: chapter 7's runs, CQSM's ``native``) the algorithm's own (TD3, SAC,
    CQSM)."""
    folders = table["run"].map(lambda run: Path(run).parent.name)
    names = [_named(f, a) for f, a in zip(folders, table["algo"], strict=True)]
    return table.assign(algo=names)


SIGNALS = ("q", "critic_loss", "score_rms", "grad_a_q", "replay_gap")
"""What CQSM's updates log, as :func:`late_training` tabulates them: the critic's mean Q and its
loss, the RMS score, ``|grad_a Q|`` at the score's move and the RMS distance of the replayed
actions from that move (:meth:`cqsm.rl.agents.cqsm.CQSMAgent.diagnostics`; the score's own loss
is left out: its meaning depends on the actor form)."""


def late_training(
    rows: pd.DataFrame,
    native_rows: pd.DataFrame | None = None,
    algo: str = "cqsm",
    budget_steps: int = BUDGET_STEPS,
    last: float = LATE,
) -> pd.DataFrame:
    """What ``algo``'s updates logged late in the budget, per method, task and interval.

    For each run that reached the budget, the mean of each of :data:`SIGNALS` over its logged
    rows in the last ``last`` of the budget's simulated time (the native runs read at the same
    budget), then the mean over seeds (``seeds`` counts them). One row per ``(method, env,
    dt)``, the method named as in :func:`grid_returns`, ``native`` marking the task's own
    interval."""
    if not 0 < last <= 1:
        raise ValueError(f"last must be a fraction of the budget in (0, 1]; got {last}.")
    rows = _together(rows, native_rows)
    rows = rows[rows["algo"] == algo]
    missing = [c for c in SIGNALS if c not in rows]
    if missing:
        raise ValueError(f"the rows of {algo!r} have no {missing} columns: not CQSM's logs?")
    methods = _methods(rows)
    runs = []
    keys = [methods.rename("method"), "env", "seed", _interval(rows)]
    for (method, env, seed, dt), run in rows.groupby(keys, sort=False):
        budget = budget_seconds(env, budget_steps)
        if not np.isclose(run["sim_time"], budget).any():
            continue  # short of the budget
        late = _last_part(run, budget, last)
        cell = {"method": method, "env": env, "dt": dt, "seed": seed}
        runs.append(cell | dict(late[list(SIGNALS)].mean()))
    columns = ["method", "env", "dt", "native", "seeds", *SIGNALS]
    if not runs:
        return pd.DataFrame(columns=columns)
    per_run = pd.DataFrame(runs)
    cells = per_run.groupby(["method", "env", "dt"], sort=False)
    table = cells[list(SIGNALS)].mean()
    table.insert(0, "seeds", cells.size())
    table = table.reset_index()
    table["native"] = [
        np.isclose(dt, native_dt(e)) for e, dt in zip(table.env, table.dt, strict=True)
    ]
    return table[columns].sort_values(["method", "env", "dt"], ignore_index=True)


def probe_table(cells: pd.DataFrame, late: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each probe of :data:`PROBES` beside CQSM's default on the same seeds, per task and
    interval off the native one, from :func:`grid_returns`'s ``cells`` (and, given
    :func:`late_training`'s table, the late ``grad_a_q`` and ``q`` of both, over all their
    seeds).

    Columns: ``probe`` (its display name), ``env``, ``dt``, ``seeds`` (the probe's), ``return``
    (its mean), ``default`` (the default's mean on those seeds; NaN if it lacks one), the shares
    of the default's native mean ``share`` and ``default_share``; the same four for the mean
    over the last fifth of the budget (``late``, ``default_late``, ``late_share``,
    ``default_late_share``, from ``return_late``); and ``grad_a_q``, ``q`` and their
    ``default_`` twins."""
    columns = ["probe", "env", "dt", "seeds", "return", "default", "share", "default_share"]
    columns += ["late", "default_late", "late_share", "default_late_share"]
    columns += ["grad_a_q", "default_grad_a_q", "q", "default_q"]
    mine = cells[cells["method"] == METHODS["cqsm"][1]]
    native = mine[mine["native"]].groupby("env")[["return", "return_late"]].mean()
    runs = mine.set_index(["env", "dt", "seed"])[["return", "return_late"]]
    signals = late.set_index(["method", "env", "dt"]) if late is not None else None

    def signal(method, env, dt, name):
        if signals is None or (method, env, dt) not in signals.index:
            return np.nan
        return float(signals.loc[(method, env, dt), name])

    out = []
    for probe in PROBES:
        name = METHODS[probe][1]
        probed = cells[(cells["method"] == name) & ~cells["native"]]
        for (env, dt), cell in probed.groupby(["env", "dt"], sort=True):
            row = {"probe": name, "env": env, "dt": dt, "seeds": len(cell)}
            same = runs.reindex([(env, dt, seed) for seed in cell["seed"]])  # the default's
            for y, key, share in (
                ("return", "return", "share"),
                ("return_late", "late", "late_share"),
            ):
                base = native[y].get(env, np.nan)
                theirs = "default" if key == "return" else "default_late"
                row[key], row[theirs] = cell[y].mean(), same[y].mean(skipna=False)
                row[share], row[f"default_{share}"] = row[key] / base, row[theirs] / base
            for key in ("grad_a_q", "q"):
                row[key] = signal(name, env, dt, key)
                row[f"default_{key}"] = signal(METHODS["cqsm"][1], env, dt, key)
            out.append(row)
    return pd.DataFrame(out, columns=columns)
