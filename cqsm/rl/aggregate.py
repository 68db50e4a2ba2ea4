"""Aggregate statistics of many runs on many tasks, as the field now reports them (Agarwal et al.,
"Deep reinforcement learning at the edge of the statistical precipice", NeurIPS 2021), on their
library ``rliable``: stratified bootstrap intervals, the interquartile mean, performance profiles
and the probability of improvement.

    scores = score_matrices(rows, step=100_000)       # per algorithm: seeds x tasks
    random = random_returns(scores.tasks)             # a uniformly random policy on each task
    normalised = normalise(scores, low=random.set_index("env")["mean"], high=best_means(scores))
    per_task_intervals(scores)                        # per algorithm and task: mean, 95% CI
    aggregate_intervals(normalised)                   # IQM, median, mean, optimality gap
    performance_profiles(normalised, taus=np.linspace(0, 1.5, 31))
    probability_of_improvement(normalised, "cqsm", baselines=("td3", "sac"))

``rows`` are the rows of :mod:`cqsm.rl.results` (one per evaluation of each run). A run counts at
a step only if it has an evaluation there, as in :func:`cqsm.rl.compare.returns_at`.

**Normalisation.** A task's score is ``(R - low) / (high - low)``: 0 is a uniformly random
policy's return (``low``, :func:`random_returns`), 1 the reference ``high``, by default the best
mean return among the algorithms compared (:func:`best_means`), or any published one. Scores on
different tasks are then on one scale, and the aggregates pool them.

**Intervals** are 95% percentile intervals of a stratified bootstrap: each task's runs are
resampled with replacement, apart from the other tasks', so the tasks stay as they are and only
the runs vary (the uncertainty of repeating the experiment with other seeds). rliable draws its
resamples from numpy's global random state whatever ``random_state`` it is given; every function
here seeds that state from its ``seed`` and the algorithm's name (so adding an algorithm to a
comparison changes no other's interval) and restores it afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import warnings
import zlib
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Scores",
    "score_matrices",
    "best_means",
    "normalise",
    "random_returns",
    "centre_returns",
    "per_task_intervals",
    "aggregate_intervals",
    "AGGREGATES",
    "performance_profiles",
    "probability_of_improvement",
]


@functools.cache
def _rliable():
    """rliable's ``library`` and ``metrics``, imported on first use (arch, which rliable's
    bootstrap is built on, takes seconds to import).

    rliable 1.2 needs arch < 8, whose ``arch.univariate`` (imported with ``arch.bootstrap``)
    calls pandas' private ``deprecate_kwarg`` in its pandas-2 form ``(old, new)``; pandas 3 takes
    the warning class first. While arch is imported the pandas-2 form is accepted (with a
    FutureWarning, as pandas 2 gave); pandas is left as it was afterwards.
    """
    from pandas.util import _decorators

    original = _decorators.deprecate_kwarg
    if next(iter(inspect.signature(original).parameters)) != "klass":  # pandas 2
        from rliable import library, metrics

        return library, metrics

    def pandas_2_form(*args, **kwargs):
        if args and isinstance(args[0], str):
            return original(FutureWarning, *args, **kwargs)
        return original(*args, **kwargs)

    _decorators.deprecate_kwarg = pandas_2_form
    try:
        from rliable import library, metrics
    finally:
        _decorators.deprecate_kwarg = original
    return library, metrics


class Scores(dict):
    """Score matrices by algorithm, each of shape (runs, tasks), with the tasks their columns
    are (``tasks``, in order) and the seeds their rows are (``seeds``: per algorithm, in order;
    empty where the matrices were made otherwise)."""

    def __init__(self, matrices: Mapping, tasks: Sequence[str], seeds: Mapping | None = None):
        super().__init__(matrices)
        self.tasks = tuple(tasks)
        self.seeds = dict(seeds or {})


def _tasks(matrices, tasks=None) -> tuple:
    """The names of the matrices' columns: ``tasks``, else their own, else ``task 0, 1, ...``."""
    if tasks is None:
        tasks = getattr(matrices, "tasks", None)
    if tasks is None:
        width = np.shape(next(iter(matrices.values())))[1]
        tasks = [f"task {i}" for i in range(width)]
    return tuple(tasks)


def _checked(matrices) -> dict[str, np.ndarray]:
    """The matrices as float arrays, each (runs, tasks) with a run at least and the same tasks."""
    if not matrices:
        raise ValueError("No score matrices: there is no algorithm to compare.")
    out = {algo: np.asarray(m, dtype=float) for algo, m in matrices.items()}
    widths = set()
    for algo, m in out.items():
        if m.ndim != 2 or m.shape[0] == 0 or m.shape[1] == 0:
            raise ValueError(f"{algo}'s scores have shape {m.shape}; rliable needs (runs, tasks).")
        if not np.isfinite(m).all():
            raise ValueError(f"{algo}'s scores are not all finite.")
        widths.add(m.shape[1])
    if len(widths) > 1:
        shapes = ", ".join(f"{algo} {m.shape}" for algo, m in out.items())
        raise ValueError(f"The algorithms' scores are on different numbers of tasks: {shapes}.")
    return out


@contextlib.contextmanager
def _global_seed(seed: int, key: str):
    """numpy's global random state (which rliable resamples from) seeded by ``seed`` and
    ``key``, and restored on leaving."""
    # The legacy global state on purpose: it is the one rliable's resampling draws from.
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed([seed, zlib.crc32(key.encode())])  # noqa: NPY002
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def _cells(counts: dict) -> str:
    return ", ".join(
        f"{algo} on {env} has {len(seeds)} seed{'s' if len(seeds) != 1 else ''}"
        + (f" ({', '.join(map(str, seeds))})" if seeds else "")
        for (algo, env), seeds in counts.items()
    )


def score_matrices(
    rows: pd.DataFrame,
    step: int,
    algos: Sequence[str] | None = None,
    envs: Sequence[str] | None = None,
    balanced: str = "raise",
    y: str = "eval_return",
) -> Scores:
    """Per algorithm, the matrix (seeds, tasks) of ``y`` at ``step``, rows in the order of the
    seeds and columns in that of ``envs`` (default: every task any of ``algos`` has run at the
    step, sorted); the tasks and seeds are the result's ``tasks`` and ``seeds``.

    A run counts at ``step`` only if it has an evaluation there, as in
    :func:`cqsm.rl.compare.returns_at`. rliable needs the same runs on every task of an
    algorithm: where an algorithm's seeds differ across the tasks, a ValueError names the cells
    and their seeds, unless ``balanced="drop"``, which keeps the seeds every task has and warns
    which it dropped. An algorithm without a run on a task is an error either way (leave the
    task out with ``envs``). ``algos`` default to every algorithm with a run at the step, in the
    order they first come.
    """
    if balanced not in ("raise", "drop"):
        raise ValueError(f"balanced must be 'raise' or 'drop', not {balanced!r}.")
    at = rows[rows["step"] == step]  # the runs that have an evaluation at the step
    if algos is None:
        algos = list(pd.unique(at["algo"]))
    at = at[at["algo"].isin(algos)]
    if envs is None:
        envs = sorted(pd.unique(at["env"]))
    at = at[at["env"].isin(envs)]
    if at.empty or not len(envs):
        raise ValueError(f"No run of {list(algos)} on {list(envs)} has an evaluation at {step}.")
    twice = at[at.duplicated(["algo", "env", "seed"], keep=False)]
    if len(twice):
        runs = sorted(
            {f"{a} on {e}, seed {s}" for a, e, s in twice[["algo", "env", "seed"]].values}
        )
        raise ValueError(
            f"More than one row at step {step} for {'; '.join(runs)}: read one control interval "
            "at a time (cqsm.rl.compare.control_intervals tells them apart)."
        )
    seeds = {
        (algo, env): sorted(
            int(s) for s in at.loc[(at["algo"] == algo) & (at["env"] == env), "seed"]
        )
        for algo in algos
        for env in envs
    }
    missing = {cell: s for cell, s in seeds.items() if not s}
    if missing:
        raise ValueError(
            f"No run at step {step}: {_cells(missing)}. Every algorithm needs runs on every task; "
            "pass envs= (or algos=) to leave one out."
        )
    matrices, kept = {}, {}
    for algo in algos:
        mine = {env: seeds[algo, env] for env in envs}
        common = sorted(set.intersection(*(set(s) for s in mine.values())))
        if any(s != common for s in mine.values()):
            uneven = {(algo, env): s for env, s in mine.items()}
            if balanced == "raise":
                raise ValueError(
                    f"The seeds at step {step} differ across tasks: {_cells(uneven)}. rliable "
                    "needs the same runs on every task of an algorithm: wait for the runs to "
                    "reach the step, leave a task out with envs=, or pass balanced='drop' to "
                    "keep the seeds every task has."
                )
            if not common:
                raise ValueError(f"No seed of {algo} is on every task at step {step}.")
            dropped = "; ".join(
                f"{env}: {', '.join(map(str, sorted(set(s) - set(common))))}"
                for env, s in mine.items()
                if s != common
            )
            warnings.warn(
                f"{algo} at step {step}: keeping the seeds every task has ({common}), dropping "
                f"{dropped}.",
                stacklevel=2,
            )
        mine = at[(at["algo"] == algo) & at["seed"].isin(common)]
        table = mine.pivot(index="seed", columns="env", values=y)
        matrices[algo] = table.loc[common, list(envs)].to_numpy(dtype=float)
        kept[algo] = tuple(common)
    return Scores(matrices, envs, kept)


def best_means(matrices: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per task, the best mean across runs among the algorithms (a reference ``high`` for
    :func:`normalise`)."""
    return np.max([m.mean(axis=0) for m in _checked(matrices).values()], axis=0)


def _per_task(value, tasks: tuple, name: str) -> np.ndarray:
    """``value`` per task: a mapping (or Series) by task name, or values in the tasks' order."""
    if isinstance(value, Mapping | pd.Series):
        absent = [t for t in tasks if t not in value]
        if absent:
            raise ValueError(f"{name} has no value for {absent}.")
        return np.array([value[t] for t in tasks], dtype=float)
    value = np.broadcast_to(np.asarray(value, dtype=float), (len(tasks),))
    return value.copy()


def normalise(matrices: Mapping[str, np.ndarray], low, high=None, tasks=None) -> Scores:
    """The matrices as normalised scores, ``(R - low) / (high - low)`` per task.

    ``low`` and ``high`` are per task: mappings (or Series) by task name, or values in the
    order of the matrices' columns. ``low`` is usually a uniformly random policy's mean return
    (:func:`random_returns`), ``high`` the best mean return among the algorithms at the final
    step (:func:`best_means` of those matrices; the default, of ``matrices`` themselves) or a
    published reference. ``tasks`` name the columns where ``matrices`` do not
    (:class:`Scores` do).
    """
    checked = _checked(matrices)
    tasks = _tasks(matrices, tasks)
    low = _per_task(low, tasks, "low")
    high = best_means(checked) if high is None else _per_task(high, tasks, "high")
    flat = [t for t, lo, hi in zip(tasks, low, high, strict=True) if not hi > lo]
    if flat:
        raise ValueError(f"high must exceed low on every task; it does not on {flat}.")
    out = {algo: (m - low) / (high - low) for algo, m in checked.items()}
    return Scores(out, tasks, getattr(matrices, "seeds", None))


class _Uniform:
    """A policy that acts uniformly at random in its action space (seeded)."""

    def __init__(self, space, seed: int):
        self.space = space
        self.space.seed(seed)

    def act(self, obs, explore: bool = False):
        return self.space.sample()


class _Centre:
    """A policy that holds the action at the centre of its box (zero on the locomotion tasks)."""

    def __init__(self, space, seed: int):
        self.action = ((space.low + space.high) / 2).astype(space.dtype)

    def act(self, obs, explore: bool = False):
        return self.action


def random_returns(envs: Sequence[str], episodes: int = 10, seed: int = 0) -> pd.DataFrame:
    """A uniformly random policy's returns on each env at its own control interval: one row per
    env with ``episodes``, ``seed`` and the ``mean`` and ``std`` of the episodes' returns.

    The episodes are the evaluation protocol's (:func:`cqsm.rl.evaluation.evaluate`: the start
    states a run of seed ``seed`` is evaluated from) and the returns are in the units of the
    runs' ``eval_return`` (native units; at the env's own interval the plain sums of rewards).
    The actions come from the action space's own generator seeded by ``seed``: the same
    ``seed`` gives the same returns.
    """
    return _reference_returns(_Uniform, envs, episodes, seed)


def centre_returns(envs: Sequence[str], episodes: int = 10, seed: int = 0) -> pd.DataFrame:
    """The returns of holding the action at the centre of the box for the whole episode (a
    body that does nothing: on Ant-v5 it stands and collects the healthy reward), in the
    layout and on the episodes of :func:`random_returns`: what a return must exceed to say
    that a policy moves the body to any purpose."""
    return _reference_returns(_Centre, envs, episodes, seed)


def _reference_returns(policy, envs, episodes: int, seed: int) -> pd.DataFrame:
    from cqsm.rl.envs import make
    from cqsm.rl.evaluation import evaluate

    out = []
    for env_id in envs:
        env = make(env_id)
        try:
            returns = evaluate(policy(env.action_space, seed), env, episodes, seed)
        finally:
            env.close()
        out.append(
            {
                "env": env_id,
                "episodes": episodes,
                "seed": seed,
                "mean": float(returns.mean()),
                "std": float(returns.std()),  # as a run's eval_return_std
            }
        )
    return pd.DataFrame(out, columns=["env", "episodes", "seed", "mean", "std"])


def _estimates(scores, func, reps: int, seed: int, key: str, level: float):
    """rliable's point estimate and stratified bootstrap interval of ``func`` on ``scores`` (a
    matrix, or a tuple of matrices resampled independently), under :func:`_global_seed`."""
    rly, _ = _rliable()
    with _global_seed(seed, key):
        point, ci = rly.get_interval_estimates(
            {key: scores}, func, reps=reps, confidence_interval_size=level
        )
    return np.atleast_1d(point[key]), np.asarray(ci[key]).reshape(2, -1)


def per_task_intervals(
    matrices: Mapping[str, np.ndarray],
    reps: int = 2000,
    seed: int = 0,
    level: float = 0.95,
    tasks=None,
) -> pd.DataFrame:
    """Per algorithm and task, the mean across runs and its stratified bootstrap interval
    (``low``, ``high``), and the number of ``runs``; ``tasks`` name the columns where
    ``matrices`` do not."""
    names = _tasks(matrices, tasks)
    out = []
    for algo, m in _checked(matrices).items():
        point, (low, high) = _estimates(m, lambda x: np.mean(x, axis=0), reps, seed, algo, level)
        for j, env in enumerate(names):
            out.append(
                {
                    "algo": algo,
                    "env": env,
                    "mean": point[j],
                    "low": low[j],
                    "high": high[j],
                    "runs": m.shape[0],
                }
            )
    return pd.DataFrame(out, columns=["algo", "env", "mean", "low", "high", "runs"])


AGGREGATES = {
    "IQM": "aggregate_iqm",
    "median": "aggregate_median",
    "mean": "aggregate_mean",
    "optimality gap": "aggregate_optimality_gap",
}
"""The aggregates of normalised scores that :func:`aggregate_intervals` reports (rliable's):
the interquartile mean of all runs pooled across tasks (the mean of the middle 50%), the median
and mean across tasks of the tasks' mean scores, and the optimality gap (how far the runs fall
short of 1 on average, scores above 1 counted as 1), each by its function in
``rliable.metrics``."""


def aggregate_intervals(
    normalised: Mapping[str, np.ndarray], reps: int = 2000, seed: int = 0, level: float = 0.95
) -> pd.DataFrame:
    """Per algorithm, each of :data:`AGGREGATES` of its normalised scores (``estimate``) with its
    stratified bootstrap interval (``low``, ``high``)."""

    _, metrics = _rliable()
    functions = [getattr(metrics, name) for name in AGGREGATES.values()]

    def func(x):
        return np.array([f(x) for f in functions])

    out = []
    for algo, m in _checked(normalised).items():
        point, (low, high) = _estimates(m, func, reps, seed, algo, level)
        for i, name in enumerate(AGGREGATES):
            out.append(
                {"algo": algo, "metric": name, "estimate": point[i], "low": low[i], "high": high[i]}
            )
    return pd.DataFrame(out, columns=["algo", "metric", "estimate", "low", "high"])


def performance_profiles(
    normalised: Mapping[str, np.ndarray],
    taus,
    reps: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """Per algorithm, its score distribution (performance profile): at each ``tau`` the
    ``fraction`` of its runs, pooled across tasks, with a normalised score above ``tau``, with a
    stratified bootstrap interval (``low``, ``high``)."""
    rly, _ = _rliable()
    taus = np.atleast_1d(np.asarray(taus, dtype=float))
    out = []
    for algo, m in _checked(normalised).items():
        with _global_seed(seed, algo):
            point, ci = rly.create_performance_profile(
                {algo: m}, taus, reps=reps, confidence_interval_size=level
            )
        low, high = np.asarray(ci[algo]).reshape(2, -1)
        for k, tau in enumerate(taus):
            out.append(
                {
                    "algo": algo,
                    "tau": tau,
                    "fraction": float(point[algo][k]),
                    "low": low[k],
                    "high": high[k],
                }
            )
    return pd.DataFrame(out, columns=["algo", "tau", "fraction", "low", "high"])


def probability_of_improvement(
    normalised: Mapping[str, np.ndarray],
    algo: str,
    baselines: str | Sequence[str],
    reps: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """The probability that a run of ``algo`` scores higher than a run of each baseline on a
    task, averaged across tasks (rliable's Mann-Whitney form: ties count one half), with a
    bootstrap interval in which both algorithms' runs are resampled, independently, within each
    task (``probability``, ``low``, ``high``). Identical scores give 0.5. It compares runs within
    a task only, so normalised and raw scores give the same probability."""
    baselines = [baselines] if isinstance(baselines, str) else list(baselines)
    checked = _checked(normalised)
    absent = [a for a in [algo, *baselines] if a not in checked]
    if absent:
        raise ValueError(f"No scores for {absent}; there are {list(checked)}.")
    _, metrics = _rliable()
    out = []
    for baseline in baselines:
        pair = (checked[algo], checked[baseline])
        key = f"{algo},{baseline}"
        point, (low, high) = _estimates(
            pair, metrics.probability_of_improvement, reps, seed, key, level
        )
        out.append(
            {
                "algo": algo,
                "baseline": baseline,
                "probability": float(point[0]),
                "low": low[0],
                "high": high[0],
            }
        )
    return pd.DataFrame(out, columns=["algo", "baseline", "probability", "low", "high"])
