"""Comparing algorithms from their tidy training rows: returns at fixed steps with bootstrap
confidence intervals, the table a reader sees of them, and the display names of the algorithms.

    published = read_published(path)   # the published values of published.csv, with sources
    table = add_published(returns_at(rows, steps=(20_000, 100_000)), published)
    published_checks(table)    # each of our means as a share of the low end of its range
    returns_table(table)       # per env, step and method: "mean ± std", "95% CI", "published"
    means_table(cells)         # any table of means, intervals and ratios, as a reader sees it

``rows`` are the rows of :mod:`cqsm.rl.results` (one per evaluation of each run). A run counts at a
step only if it has an evaluation there, so a run still in progress is left out of the steps it
has not reached, and the table says how many seeds each entry has.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "LABELS",
    "label",
    "bootstrap_ci",
    "returns_at",
    "PUBLISHED",
    "PUBLISHED_COLUMNS",
    "read_published",
    "add_published",
    "published_checks",
    "mean_std",
    "interval",
    "percent",
    "returns_table",
    "control_intervals",
    "ratio_text",
    "means_table",
    "returns_by_step",
    "shares_of",
    "side_by_side",
    "runs_beside",
    "final_summary",
    "first_reached",
    "window_means",
    "window_summary",
    "seed_range",
    "seeds_below",
]

# How each algorithm is named in the book's figures and tables (and coloured: cqsm.pipeline.plots).
LABELS = {
    "cqsm": "CQSM",
    "td3": "TD3",
    "sac": "SAC",
    "diffusion_ql": "Diffusion-QL",
    "qsm": "QSM",
}


def label(algo: str) -> str:
    """The display name of an algorithm (its own name if it has none)."""
    return LABELS.get(algo, algo)


def bootstrap_ci(
    values, level: float = 0.95, n_resamples: int = 10_000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean of ``values``.

    With three seeds it is wide and only roughly calibrated: read it as the spread the seeds
    allow, not as a test. One value gives the interval ``(value, value)``.
    """
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (np.nan, np.nan)
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_resamples, x.size))].mean(axis=1)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def returns_at(
    rows: pd.DataFrame, steps=(20_000, 100_000), y: str = "eval_return", level: float = 0.95
) -> pd.DataFrame:
    """Mean, standard deviation (across seeds) and bootstrap interval of ``y`` at each step,
    per environment and algorithm; ``seeds`` counts the runs that reached the step."""
    out = []
    for (env, algo), group in rows.groupby(["env", "algo"], sort=False):
        for step in steps:
            values = group.loc[group["step"] == step, y].to_numpy()
            low, high = bootstrap_ci(values, level)
            out.append(
                {
                    "env": env,
                    "algo": algo,
                    "step": step,
                    "seeds": values.size,
                    "mean": values.mean() if values.size else np.nan,
                    "std": values.std(ddof=1) if values.size > 1 else np.nan,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
    return pd.DataFrame(out)


PUBLISHED_COLUMNS = ("algo", "env", "step", "published_low", "published_high", "source")
"""The columns of a ``published.csv``: a published value or range per algorithm, task and
step, and where it comes from."""


PUBLISHED = Path("ch07_locomotion") / "published.csv"
"""Where the published values lie under the results root (chapter 7's folder)."""


def read_published(path) -> pd.DataFrame:
    """The published values in the CSV at ``path`` (columns :data:`PUBLISHED_COLUMNS`), or an
    empty table with those columns where there is no such file."""
    if not Path(path).exists():
        return pd.DataFrame(columns=list(PUBLISHED_COLUMNS))
    table = pd.read_csv(path)
    missing = [c for c in PUBLISHED_COLUMNS if c not in table]
    if missing:
        raise ValueError(
            f"{path} lacks the column(s) {missing}; it needs {list(PUBLISHED_COLUMNS)}."
        )
    return table[list(PUBLISHED_COLUMNS)]


def add_published(table: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """``table`` (of :func:`returns_at`) with the published range of each entry, where there is
    one: the ``published_low`` and ``published_high`` of ``published`` (a table with columns
    ``algo``, ``env``, ``step``, ``published_low``, ``published_high``), matched on algorithm,
    task and step; ``table`` unchanged if ``published`` is empty."""
    if published.empty:
        return table
    columns = ["algo", "env", "step", "published_low", "published_high"]
    return table.merge(published[columns], on=["algo", "env", "step"], how="left")


def published_checks(table: pd.DataFrame, tolerance: float = 0.1) -> pd.DataFrame:
    """Each entry of ``table`` (of :func:`add_published`) that has a published value: its
    ``algo``, ``env``, ``step``, ``seeds``, ``mean``, ``published_low``, ``published_high``,
    ``share`` (the mean over the low end of the published range) and ``verdict``: ``"within
    10%"`` where the mean lies within ``tolerance`` (here 10%) of the range (at least ``1 -
    tolerance`` times its low end, at most ``1 + tolerance`` times its high end), ``"more than
    10% short"`` below that, ``"more than 10% above"`` above it, and ``"no run yet"`` where
    no seed has reached the step."""
    columns = ["algo", "env", "step", "seeds", "mean", "published_low", "published_high"]
    columns += ["share", "verdict"]
    if "published_low" not in table:
        return pd.DataFrame(columns=columns)
    checks = table.dropna(subset=["published_low"]).copy()
    checks["share"] = checks["mean"] / checks["published_low"]
    limit = f"{tolerance:.0%}"

    def verdict(seeds, mean, low, high):
        if not seeds:
            return "no run yet"
        if mean < (1 - tolerance) * low:
            return f"more than {limit} short"
        return f"more than {limit} above" if mean > (1 + tolerance) * high else f"within {limit}"

    entries = checks[["seeds", "mean", "published_low", "published_high"]].itertuples(index=False)
    checks["verdict"] = [verdict(*entry) for entry in entries]
    return checks[columns].reset_index(drop=True)


def mean_std(mean: float, std: float, spec: str = ".0f") -> str:
    """``"mean ± std"`` in the format ``spec``; the mean alone where the standard deviation is
    undefined (NaN: one seed), and ``"–"`` where the mean is (no seed)."""
    if np.isnan(mean):
        return "–"
    return f"{mean:{spec}}" if np.isnan(std) else f"{mean:{spec}} ± {std:{spec}}"


def interval(low: float, high: float, spec: str = ".0f") -> str:
    """An interval as ``"[low, high]"`` in the format ``spec``; ``"–"`` where it is undefined."""
    return "–" if np.isnan(low) else f"[{low:{spec}}, {high:{spec}}]"


def percent(ratio: float) -> str:
    """A ratio as a whole percentage (``0.874`` is ``"87%"``); ``"–"`` where it is undefined."""
    return "–" if np.isnan(ratio) else f"{ratio:.0%}"


def _published(low: float, high: float) -> str:
    if np.isnan(low):
        return "–"
    return f"{low:.0f}" if low == high else f"{low:.0f}–{high:.0f}"


def returns_table(table: pd.DataFrame) -> pd.DataFrame:
    """The returns of :func:`returns_at` as a reader sees them, one row per task, step and
    method (sorted): the number of seeds, ``"mean ± std"`` and the ``"95% CI"`` of the mean,
    whole numbers, and the ``"published"`` value or range where :func:`add_published` added
    one."""
    shown = pd.DataFrame(
        {
            "env": table["env"],
            "step": table["step"],
            "method": table["algo"].map(label),
            "seeds": table["seeds"],
            "mean ± std": [
                mean_std(m, s) for m, s in zip(table["mean"], table["std"], strict=True)
            ],
            "95% CI": [
                interval(lo, hi) for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
            ],
        }
    )
    if "published_low" in table:
        pairs = zip(table["published_low"], table["published_high"], strict=True)
        shown["published"] = [_published(lo, hi) for lo, hi in pairs]
    return shown.set_index(["env", "step", "method"]).sort_index()


def control_intervals(rows: pd.DataFrame) -> pd.Series:
    """Each training row's control interval in seconds, ``sim_time / step`` rounded to the
    microsecond (a Series named ``dt`` on the index of ``rows``)."""
    return (rows["sim_time"] / rows["step"]).round(6).rename("dt")


def ratio_text(ratio: float, low: float, high: float) -> str:
    """A ratio and its interval as whole percentages, ``"45% [31%, 62%]"``; the ratio alone where
    the interval is undefined, and ``"–"`` where the ratio is."""
    if np.isnan(ratio):
        return "–"
    return percent(ratio) if np.isnan(low) else f"{percent(ratio)} {interval(low, high, '.0%')}"


_STATS = ("seeds", "mean", "std", "ci_low", "ci_high", "ratio", "ratio_low", "ratio_high")


def means_table(tables, ratio: str = "ratio", spec: str = ".0f") -> pd.DataFrame:
    """A table of means across seeds as a reader sees it: ``seeds``, ``"mean ± std"``, ``"95%
    CI"`` of the mean and, where the table has ``ratio`` (with ``ratio_low`` and
    ``ratio_high``), the ratio and its interval as percentages, in a column named ``ratio``.

    ``tables`` is one table with the columns ``seeds, mean, std, ci_low, ci_high`` (for example
    :func:`cqsm.rl.interval_study.interval_table`'s), indexed by its other columns in their
    order; or a dict of such tables by name, side by side under their names (a column level)."""
    if isinstance(tables, dict):
        shown = {name: means_table(t, ratio, spec) for name, t in tables.items()}
        return pd.concat(shown, axis=1)
    table = tables
    keys = [c for c in table.columns if c not in _STATS]
    shown = table[keys].copy()
    shown["seeds"] = table["seeds"]
    shown["mean ± std"] = [
        mean_std(m, s, spec) for m, s in zip(table["mean"], table["std"], strict=True)
    ]
    shown["95% CI"] = [
        interval(lo, hi, spec) for lo, hi in zip(table["ci_low"], table["ci_high"], strict=True)
    ]
    if "ratio" in table:
        parts = zip(table["ratio"], table["ratio_low"], table["ratio_high"], strict=True)
        shown[ratio] = [ratio_text(*p) for p in parts]
    return shown.set_index(keys) if keys else shown


def returns_by_step(table: pd.DataFrame, spec: str = ".0f") -> pd.DataFrame:
    """:func:`returns_at`'s table with one row per task and algorithm (display names; tasks in
    the order they first come, and within a task the algorithms in the order they come) and
    one column per step, ``"mean ± std"`` (``"–"`` where no run has reached it), and
    ``seeds``, the runs at the last step."""
    shown = table.assign(
        method=table["algo"].map(label),
        text=[mean_std(m, s, spec) for m, s in zip(table["mean"], table["std"], strict=True)],
    )
    keys = ["env", "method"]
    wide = shown.pivot(index=keys, columns="step", values="text")
    order = shown[keys].drop_duplicates()
    tasks = {env: i for i, env in enumerate(pd.unique(order["env"]))}
    order = order.sort_values("env", key=lambda env: env.map(tasks), kind="stable")
    wide = wide.reindex(pd.MultiIndex.from_frame(order))
    wide = wide.reindex(columns=sorted(wide.columns)).fillna("–")
    last = shown[shown["step"] == shown["step"].max()].set_index(keys)["seeds"]
    wide["seeds"] = last.reindex(wide.index).fillna(0).astype(int)
    return wide.rename_axis(columns=None)


def shares_of(table: pd.DataFrame, reference: str, order=None) -> pd.DataFrame:
    """:func:`returns_at`'s table with one row per ``algo`` (in ``order`` where given, those
    with rows only): the mean return at each step (``"return at <step>"``, whole numbers), the
    most ``seeds`` at any step, and the mean at the last step as a share of ``reference``'s
    there (``"of <reference>'s"``, a percentage; absent without the reference's row)."""
    wide = table.pivot_table(index="algo", columns="step", values="mean").round(0)
    last = f"return at {table['step'].max()}"
    wide.columns = [f"return at {s}" for s in wide.columns]
    wide["seeds"] = table.groupby("algo")["seeds"].max()
    if reference in wide.index and last in wide:
        wide[f"of {label(reference)}'s"] = (wide[last] / wide.loc[reference, last]).map(percent)
    if order is not None:
        wide = wide.loc[[name for name in order if name in wide.index]]
    return wide


def side_by_side(table: pd.DataFrame, mine: str, reference: str) -> pd.DataFrame:
    """:func:`returns_at`'s table with one row per task and step and one column per method
    (display names) of its mean return (whole numbers), then ``mine``'s mean as a share of
    ``reference``'s (``"<mine> / <reference>"``, a percentage) and ``mine``'s seeds
    (``"<mine> seeds"``), where both have rows."""
    shown = table.assign(method=table["algo"].map(label))
    by_method = {"index": ["env", "step"], "columns": "method"}
    wide = shown.pivot_table(**by_method, values="mean").round(0)
    seeds = shown.pivot_table(**by_method, values="seeds")
    ours, theirs = label(mine), label(reference)
    if {ours, theirs} <= set(wide.columns):
        wide[f"{ours} / {theirs}"] = (wide[ours] / wide[theirs]).map(percent)
        wide[f"{ours} seeds"] = seeds[ours].astype("Int64")
    return wide


def runs_beside(rows: pd.DataFrame, reference: pd.DataFrame, every: int, name: str):
    """Each run's evaluation return (a column ``"<variant>, seed <seed>"`` per run of ``rows``)
    at every ``every`` steps, with the mean over seeds of ``reference``'s runs at the same steps
    in a last column ``name`` (NaN without reference runs); one row per step."""
    side = rows.pivot_table(index="step", columns=["variant", "seed"], values="eval_return")
    side.columns = [f"{variant}, seed {seed}" for variant, seed in side.columns]
    side[name] = reference.groupby("step")["eval_return"].mean() if len(reference) else np.nan
    return side[side.index % every == 0]


def final_summary(rows: pd.DataFrame, by) -> pd.DataFrame:
    """Per group of the columns ``by`` of tidy training rows (:mod:`cqsm.rl.results`): its last
    step (``steps``), the seeds there, the mean and standard deviation over those seeds of the
    evaluation return there (``final return``, ``std``), the mean over seeds of each seed's best
    evaluation (``best return``), and the median training speed after the first row
    (``steps/s``)."""
    out = {}
    for key, d in _groups(rows, by):
        final = d[d["step"] == d["step"].max()]
        out[key] = {
            "steps": int(d["step"].max()),
            "seeds": final["seed"].nunique(),
            "final return": final["eval_return"].mean(),
            "std": final["eval_return"].std(),
            "best return": d.groupby("seed")["eval_return"].max().mean(),
            "steps/s": d.loc[d["step"] > d["step"].min(), "sps"].median(),
        }
    return _indexed(out, by)


def _groups(rows: pd.DataFrame, by):
    """``(key, rows)`` per group of the columns ``by``: a scalar key for one column, a tuple for
    several, ``"all"`` for none."""
    by = list(by)
    if not by:
        return [("all", rows)]
    groups = rows.groupby(by if len(by) > 1 else by[0], sort=False)
    return list(groups)


def _indexed(out: dict, by) -> pd.DataFrame:
    """A table of ``out``'s rows indexed by its keys, the index named by ``by``."""
    table = pd.DataFrame.from_dict(out, orient="index")
    if len(by) > 1:
        table.index = pd.MultiIndex.from_tuples(table.index, names=list(by))
    elif len(by) == 1:
        table.index.name = list(by)[0]
    return table


def first_reached(
    rows: pd.DataFrame, target: float, by=(), y: str = "eval_return", below: bool = False
) -> pd.DataFrame:
    """Per group of the columns ``by`` (one row for all of ``rows`` where ``by`` is empty):
    when each seed first reached ``target`` in ``y`` (at or above it; at or below with
    ``below``) and where the group ends. Columns: ``seeds``, ``reached`` (seeds that ever did),
    ``first steps`` (their first steps, sorted), ``at the end`` (seeds at the target at their
    last step), ``final`` and ``final std`` (the mean and standard deviation over seeds of ``y``
    at the group's last step), and ``met`` (that mean at the target)."""

    def at(values):
        return values <= target if below else values >= target

    out = {}
    for key, d in _groups(rows, by):
        first = d[at(d[y])].groupby("seed")["step"].min()
        last = d.loc[d["step"] == d["step"].max(), y]
        out[key] = {
            "seeds": d["seed"].nunique(),
            "reached": len(first),
            "first steps": sorted(first.astype(int).tolist()),
            "at the end": int(at(last).sum()),
            "final": last.mean(),
            "final std": last.std(),
            "met": bool(at(last.mean())),
        }
    return _indexed(out, by)


def window_means(rows: pd.DataFrame, first: int, last: int, by=()) -> pd.Series:
    """Each seed's mean evaluation return over its evaluations from step ``first`` to ``last``
    (both included), per group of the columns ``by``: a series indexed by ``by`` and ``seed``
    (by ``seed`` alone where ``by`` is empty). Less noisy than one evaluation where the learning
    curves swing."""
    window = rows[(rows["step"] >= first) & (rows["step"] <= last)]
    return window.groupby([*by, "seed"])["eval_return"].mean()


def window_summary(rows: pd.DataFrame, first: int, last: int, by) -> pd.DataFrame:
    """Across seeds, per group of the columns ``by``: the ``mean``, ``std`` and number
    (``seeds``) of the seeds' :func:`window_means`."""
    per_seed = window_means(rows, first, last, by)
    table = per_seed.groupby(level=list(by)).agg(["mean", "std", "count"])
    return table.set_axis(["mean", "std", "seeds"], axis=1)


def seed_range(rows: pd.DataFrame, first: int, by) -> pd.DataFrame:
    """Each run's lowest and highest evaluation return from step ``first`` on: one row per group
    of the columns ``by``, a ``(min | max, seed)`` column per seed."""
    later = rows[rows["step"] >= first].groupby([*by, "seed"])["eval_return"]
    return later.agg(["min", "max"]).unstack("seed")


def seeds_below(runs: pd.DataFrame, reference: pd.DataFrame, by="env") -> list[int]:
    """For each row of ``runs`` (one return per run, in ``eval_return``), how many rows of
    ``reference`` with the same ``by`` (the task) have a lower return: the seeds of a reference
    method that the run ended above."""
    return [
        int((reference.loc[reference[by] == key, "eval_return"] < value).sum())
        for key, value in zip(runs[by], runs["eval_return"], strict=True)
    ]
