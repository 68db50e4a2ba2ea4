"""Many runs (algorithm x env x seed) on local worker processes or a Ray cluster, resumable as a
whole.

    from cqsm.rl.sweep import sweep
    frame = sweep([TrainSettings.for_task("Pendulum-v1", seed=s, out="runs") for s in range(3)])
    frame = sweep(runs, backend="ray", address="10.0.0.5:6379")  # out: a folder every node reaches

Each run goes to its own folder (:attr:`cqsm.rl.train.TrainSettings.run_dir`). A run whose rows
already reach its ``total_steps`` is skipped, one with a checkpoint is resumed, and any other
starts afresh, so an interrupted sweep continues where it stopped when called again. A line is
printed as each run ends and a table of every run at the end (:func:`summary_table`); a run that
fails does not stop the others, and the sweep raises :class:`SweepError` naming it at the end.

Two backends run the runs:

- ``"local"``: worker processes on this machine, ``workers`` at a time, a fresh process per run,
  each with ``torch_threads`` (1) torch threads; run as many workers as there are cores
  (``workers=1``: the runs one after another in this process).
- ``"ray"``: each run is one Ray task with ``num_cpus=1`` on the cluster at ``address``
  (anything ``ray.init`` accepts: ``"host:port"`` of the head node, ``"auto"``,
  ``"ray://host:10001"``; None: ``RAY_ADDRESS``, else the cluster last started on this machine
  with ``ray start``, else a new Ray instance here). The runs' ``out`` folders must be absolute
  paths on a filesystem that every node reaches (the node that trains a run writes its rows and
  checkpoints there, and any node may resume it). A task whose worker process or node dies is
  retried ``max_retries`` times and resumes from the run's last checkpoint; a run that raises
  (a diverged run, a bad setting) is not retried. The rows are the local backend's, bar the
  timing columns ``sps`` and ``wall_time``.

``backend`` and ``address`` default to the environment variables ``CQSM_SWEEP_BACKEND`` and
``CQSM_RAY_ADDRESS``, which ``make figures BACKEND=ray RAY_ADDRESS=...`` sets: the chapters call
``sweep(...)`` unchanged and their runs go where the caller says. Ray is an optional extra
(``pip install -e '.[ray]'``), imported only when the Ray backend is used.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import multiprocessing as mp
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from cqsm.rl import results
from cqsm.rl.envs import EnvError
from cqsm.rl.train import TrainingDiverged, TrainSettings, train
from cqsm.settings import SettingsError

__all__ = [
    "sweep",
    "sweep_runs",
    "status",
    "summary_table",
    "RunOutcome",
    "SweepError",
    "BACKENDS",
    "BACKEND_ENV",
    "ADDRESS_ENV",
]

BACKENDS = ("local", "ray")
BACKEND_ENV = "CQSM_SWEEP_BACKEND"
"""environment variable naming the default backend (``local`` when unset)"""
ADDRESS_ENV = "CQSM_RAY_ADDRESS"
"""environment variable naming the default Ray address (unset: Ray's own ``RAY_ADDRESS``)"""
CONNECT_TIMEOUT = 10.0
"""seconds to wait for a Ray head node to answer before the sweep gives up"""


# Failures whose message says it all (the CLI's user errors): no traceback is printed.
_SAID = (results.RunError, EnvError, SettingsError, TrainingDiverged)


class SweepError(results.RunError):
    """A sweep that cannot start as asked (backend, address, out folder), or whose runs failed."""


def status(settings: TrainSettings) -> str:
    """``"done"``, ``"resume"`` or ``"new"`` for one run's folder."""
    run_dir = settings.run_dir
    rows = results.read_rows(run_dir / "results.csv")
    if rows and max(r["step"] for r in rows) >= settings.total_steps:
        return "done"
    return "resume" if (run_dir / "settings.json").exists() else "new"


@dataclass
class RunOutcome:
    """What became of one run of a sweep (one row of :func:`summary_table`)."""

    run_dir: str
    """the run's folder"""
    status: str
    """``"skipped"`` (done before), ``"trained"`` (from step 0), ``"resumed"`` or ``"failed"``"""
    start_step: int = 0
    """the step training started from: 0, the checkpoint's step when resumed"""
    final_step: int | None = None
    """the last step with a row (None: no rows)"""
    final_eval_return: float | None = None
    """the evaluation return of that row"""
    seconds: float = 0.0
    """wall-clock seconds the run took in this sweep (its last attempt, on Ray)"""
    host: str = ""
    """the machine that ran it"""
    error: str | None = None
    """why it failed: the exception's type and message"""
    detail: str | None = field(default=None, repr=False)
    """the failure's traceback, as text"""
    retried: bool = False
    """whether a Ray task of it was retried (it resumed from a checkpoint the sweep had not
    seen when it started)"""
    rows: pd.DataFrame | None = field(default=None, repr=False)
    """the run's rows, as ``results.csv`` holds them"""

    @property
    def name(self) -> str:
        return Path(self.run_dir).name

    @property
    def label(self) -> str:
        """The status as the table shows it."""
        if self.status == "resumed":
            return f"resumed from step {self.start_step}" + (" (retried)" if self.retried else "")
        return {"skipped": "done already"}.get(self.status, self.status)


def _finished(settings: TrainSettings, state: str, start_step: int, began: float) -> RunOutcome:
    rows = pd.read_csv(settings.run_dir / "results.csv")
    last = rows.iloc[-1] if len(rows) else None
    return RunOutcome(
        run_dir=str(settings.run_dir),
        status=state,
        start_step=start_step,
        final_step=None if last is None else int(last["step"]),
        final_eval_return=None if last is None else float(last["eval_return"]),
        seconds=time.perf_counter() - began,
        host=socket.gethostname(),
        rows=rows,
    )


def _run(job: tuple[TrainSettings, Callable | None]) -> RunOutcome:
    """Train one run of a sweep where it stands (new, resumed or done); never raises for a
    failed run but says why in the outcome. The body of a local worker and of a Ray task."""
    settings, on_eval = job
    began = time.perf_counter()
    try:
        state = status(settings)
        if state == "done":
            return _finished(settings, "skipped", 0, began)
        resume = state == "resume"
        result = train(dataclasses.replace(settings, resume=resume, progress=False), on_eval)
        kind = "resumed" if result.start_step > 0 else "trained"
        return _finished(settings, kind, result.start_step, began)
    except Exception as err:
        return RunOutcome(
            run_dir=str(settings.run_dir),
            status="failed",
            seconds=time.perf_counter() - began,
            host=socket.gethostname(),
            error=f"{type(err).__name__}: {err}",
            detail=None if isinstance(err, _SAID) else traceback.format_exc(),
        )


def _progress(outcome: RunOutcome, count: int, total: int) -> str:
    head = f"sweep: [{count}/{total}] {outcome.name}:"
    if outcome.status == "failed":
        return f"{head} failed after {outcome.seconds:.0f} s: {outcome.error}"
    where = f" on {outcome.host}" if outcome.host and outcome.host != socket.gethostname() else ""
    what = "trained" if outcome.status == "trained" else outcome.label
    return (
        f"{head} {what} to step {outcome.final_step}, eval return "
        f"{outcome.final_eval_return:.1f} ({outcome.seconds:.0f} s{where})"
    )


def summary_table(outcomes: list[RunOutcome]) -> str:
    """The runs of a sweep as an aligned text table: run, status, final step, final eval return
    and seconds."""
    header = ("run", "status", "final step", "final eval return", "seconds")
    lines = []
    for o in outcomes:
        ret = o.final_eval_return
        lines.append(
            (
                o.name,
                o.label,
                "" if o.final_step is None else str(o.final_step),
                "" if ret is None or not math.isfinite(ret) else f"{ret:.1f}",
                "" if o.status == "skipped" else f"{o.seconds:.0f}",
            )
        )
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    numeric = (False, False, True, True, True)

    def fmt(row):
        cells = zip(row, widths, numeric, strict=True)
        cells = [c.rjust(w) if n else c.ljust(w) for c, w, n in cells]
        return "  ".join(cells).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([fmt(header), rule, *map(fmt, lines)])


def _backend(backend: str | None) -> str:
    chosen = (backend or os.environ.get(BACKEND_ENV) or "local").strip().lower()
    if chosen not in BACKENDS:
        where = "" if backend else f" (from the environment variable {BACKEND_ENV})"
        raise SweepError(f"Unknown sweep backend {chosen!r}{where}; choose one of {BACKENDS}.")
    return chosen


def _import_ray():
    try:
        import ray
    except ImportError:
        raise SweepError(
            "The Ray backend needs Ray, which is not installed here: "
            "pip install -c constraints.txt -e '.[ray]' (make venv installs it)."
        ) from None
    return ray


def _probe_target(address: str | None) -> str | None:
    """The ``host:port`` that ``ray.init(address)`` will connect to, where it can be told
    (None: it starts a new Ray instance on this machine)."""
    target = address or os.environ.get("RAY_ADDRESS") or None
    if target == "local":
        return None
    if target in (None, "auto"):  # Ray's own search: the last `ray start` on this machine
        try:
            from ray._private.services import canonicalize_bootstrap_address

            return canonicalize_bootstrap_address(target)
        except Exception as err:
            if target is None:
                return None
            raise SweepError(
                f"No Ray cluster found for address 'auto' on this machine ({err}); start one "
                "with `ray start --head`, or give the head node's host:port."
            ) from None
    return target.split("://", 1)[-1].rstrip("/")


def check_reachable(address: str | None, timeout: float = CONNECT_TIMEOUT) -> None:
    """Raise a :class:`SweepError` unless the head node that ``ray.init(address)`` would
    connect to accepts a connection within ``timeout`` seconds (``ray.init`` itself may wait
    minutes for one that is down)."""
    target = _probe_target(address)
    if target is None:
        return
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit():
        return  # not host:port: ray.init says what it makes of it
    try:
        socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout).close()
    except OSError as err:
        if isinstance(err, TimeoutError):
            reason = f"no answer within {timeout:g} s"
        else:
            reason = err.strerror or type(err).__name__
        found = "" if address else " (found in RAY_ADDRESS or Ray's record of its last cluster)"
        raise SweepError(
            f"Cannot reach a Ray cluster at {address or target}{found}: {reason}. Start one "
            f"with `ray start --head --port {port}` on the head node and `ray start --address "
            "<head>:<port>` on each worker, or correct the address."
        ) from None


def _local(jobs: list, workers: int) -> Iterator[RunOutcome]:
    if workers > 1:  # even for one run: a worker's seeds and threads never touch the caller
        with mp.get_context("spawn").Pool(min(workers, len(jobs)), maxtasksperchild=1) as pool:
            yield from pool.imap_unordered(_run, jobs)
    else:
        for job in jobs:
            yield _run(job)


def _ray(jobs: list, address: str | None, max_retries: int) -> Iterator[RunOutcome]:
    ray = _import_ray()
    started = not ray.is_initialized()  # else: the caller's own ray.init, left as it is
    if started:
        try:
            ray.init(address=address, logging_level=logging.WARNING)  # no INFO on connecting
        except (ConnectionError, RuntimeError, ValueError) as err:
            raise SweepError(
                f"Cannot connect to a Ray cluster at {address or 'RAY_ADDRESS'}: "
                f"{(str(err).strip().splitlines() or [type(err).__name__])[0]}. Is a Ray head "
                "node (`ray start --head`) listening there?"
            ) from None
    try:
        task = ray.remote(num_cpus=1, max_retries=max_retries, retry_exceptions=False)(_run)
        pending = {task.remote(job): job for job in jobs}
        while pending:
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            settings, _ = pending.pop(ref)
            try:
                yield ray.get(ref)
            except ray.exceptions.RayError as err:  # the task died more than max_retries times
                yield RunOutcome(
                    run_dir=str(settings.run_dir),
                    status="failed",
                    error=f"{type(err).__name__}: " + (str(err).strip().splitlines() or [""])[0],
                    detail=str(err),
                )
    finally:
        if started:
            ray.shutdown()


def sweep_runs(
    runs: list[TrainSettings],
    workers: int = 2,
    on_eval: Callable | None = None,
    *,
    backend: str | None = None,
    address: str | None = None,
    max_retries: int = 3,
) -> list[RunOutcome]:
    """Train every run not yet done on ``backend`` and say what became of each, in the order
    of ``runs`` (see the module's docstring); print a line as each ends and the table at the
    end, then raise :class:`SweepError` if any failed.

    ``workers``: processes at a time on the local backend; ``address`` and ``max_retries``: the
    Ray backend's cluster and retries of a task whose worker or node dies. ``on_eval`` (see
    :func:`cqsm.rl.train.train`) must be a module-level function to reach the worker processes.
    """
    backend = _backend(backend)
    if backend == "local" and address is not None:
        raise SweepError(
            f"A Ray address ({address!r}) was given, but the backend is local; use the Ray "
            "backend (--backend ray) with it."
        )
    if address is None:
        address = os.environ.get(ADDRESS_ENV) or None
    if backend == "ray":
        relative = sorted({s.out for s in runs if not Path(s.out).is_absolute()})
        if relative:
            raise SweepError(
                f"The Ray backend needs an absolute out folder on a filesystem that every node "
                f"of the cluster reaches (the nodes write the runs there); got {relative[0]!r}. "
                "Give one such as /shared/runs (--out)."
            )
    if max_retries < 0 or workers < 1:
        raise SweepError(f"Need workers >= 1 and max_retries >= 0; got {workers}, {max_retries}.")
    names = [str(s.run_dir) for s in runs]
    if len(set(names)) != len(names):
        raise SweepError("Two runs of the sweep share a run folder; give them other seeds.")

    before = {name: status(s) for name, s in zip(names, runs, strict=True)}
    todo = [(s, on_eval) for s in runs if before[str(s.run_dir)] != "done"]
    if todo and backend == "ray" and not _import_ray().is_initialized():
        check_reachable(address)  # before ray.init, which may wait minutes for a lost head
    where = f"{workers} worker processes" if backend == "local" else f"Ray ({address or 'local'})"
    print(
        f"sweep: {len(runs) - len(todo)} of {len(runs)} runs done; {len(todo)} to run on {where}",
        flush=True,
    )
    outcomes: dict[str, RunOutcome] = {}
    if todo:
        ran = _local(todo, workers) if backend == "local" else _ray(todo, address, max_retries)
        for count, outcome in enumerate(ran, start=1):
            outcome.retried = outcome.status == "resumed" and before[outcome.run_dir] == "new"
            outcomes[outcome.run_dir] = outcome
            print(_progress(outcome, count, len(todo)), flush=True)
            if outcome.detail:
                print(outcome.detail, file=sys.stderr, flush=True)
    for name, s in zip(names, runs, strict=True):
        if name not in outcomes:
            outcomes[name] = _finished(s, "skipped", 0, time.perf_counter())
        elif backend == "ray" and outcomes[name].status != "failed":
            if not (s.run_dir / "results.csv").exists():
                print(
                    f"sweep: warning: {s.run_dir} was written on {outcomes[name].host} but is "
                    "not visible here: the out folder must be on a filesystem that every node "
                    "of the cluster shares",
                    file=sys.stderr,
                    flush=True,
                )
    ordered = [outcomes[name] for name in names]
    print(summary_table(ordered), flush=True)
    failed = [o for o in ordered if o.status == "failed"]
    if failed:
        raise SweepError(
            f"{len(failed)} of {len(runs)} runs failed: "
            + "; ".join(f"{o.name} ({o.error})" for o in failed)
        )
    return ordered


def sweep(
    runs: list[TrainSettings],
    workers: int = 2,
    on_eval: Callable | None = None,
    *,
    backend: str | None = None,
    address: str | None = None,
    max_retries: int = 3,
) -> pd.DataFrame:
    """Train every run not yet done, ``workers`` at a time locally or as Ray tasks; return all
    their rows (those of each run's ``results.csv``, in the order of ``runs``).

    The arguments are :func:`sweep_runs`'s: ``backend`` ``"local"`` or ``"ray"`` (default: the
    environment variable ``CQSM_SWEEP_BACKEND``, else local), ``address`` the Ray cluster
    (default: ``CQSM_RAY_ADDRESS``), ``max_retries`` of a Ray task whose worker or node dies.
    """
    outcomes = sweep_runs(
        runs, workers, on_eval, backend=backend, address=address, max_retries=max_retries
    )
    return pd.concat([o.rows for o in outcomes], ignore_index=True)
