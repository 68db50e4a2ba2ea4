"""The throughput benchmark: training steps per second and action latency of every algorithm.

    cqsm bench                      # or: make bench
    from cqsm.rl.bench import BenchSettings, bench
    table = bench(BenchSettings(repeats=3))

For each repeat, every (algorithm, env) pair is measured once, in an order rotated from repeat to
repeat, so that slow drifts of the machine fall on every algorithm alike (interleaved). A
measurement builds the env and the agent exactly as :func:`cqsm.rl.train.train` does (the task's
settings, its network sizes and its training batch size), fills the replay buffer with ``fill``
random transitions, then times

- **steps per second of training**: ``steps`` iterations of the training loop's work after the
  warm-up (act with exploration, step the env, store the transition, one update);
- **action latency**: ``calls`` calls of ``act(obs, explore=False)`` on one observation, the
  median per call (what deployment pays each control step).

One torch thread in this process. The tidy rows go to ``<out>/results.csv`` and the summary
(median and range over repeats, and CQSM's ratios to the others) to ``<out>/summary.csv``, both
with ``provenance.json``; every file is written atomically, after every measurement, and a bench
run that was interrupted continues where it stopped when run again with the same settings
(``fresh=True`` measures everything again).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cqsm.rl import results
from cqsm.rl.agents import ALGOS
from cqsm.rl.replay import ReplayBuffer
from cqsm.rl.rollout import Rollout
from cqsm.rl.train import TrainSettings, make_agent, make_env
from cqsm.settings import SettingsError, check_positive

__all__ = [
    "BenchSettings",
    "measure",
    "bench",
    "summarise",
    "markdown",
    "read_bench",
    "bench_machine",
    "same_machine",
    "both_runs",
    "speedups",
    "relative_speed",
]


@dataclass
class BenchSettings:
    """Settings of one benchmark run."""

    algos: tuple[str, ...] = ("cqsm", "td3", "sac", "diffusion_ql", "qsm")
    """algorithms to measure"""
    envs: tuple[str, ...] = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5")
    """environments to measure on (the four locomotion tasks of the comparison)"""
    repeats: int = 3
    """measurements of each (algorithm, env) pair, interleaved"""
    steps: int = 300
    """timed training steps (act, env step, store, update) per measurement"""
    fill: int = 1_000
    """random transitions in the replay buffer before timing"""
    calls: int = 200
    """timed act() calls per measurement (evaluation mode)"""
    batch_size: int | None = None
    """transitions per update; None: each algorithm's own training batch size for the task"""
    out: str = "paper_figures/results/bench"
    """folder of results.csv, summary.csv and provenance.json"""
    progress: bool = True
    """show a progress bar"""
    fresh: bool = False
    """discard the measurements already in out and measure everything again"""

    def __post_init__(self):
        self.algos, self.envs = tuple(self.algos), tuple(self.envs)
        unknown = [a for a in self.algos if a not in ALGOS]
        if unknown:
            raise SettingsError(f"Unknown algorithms {unknown}; choose from {sorted(ALGOS)}.")
        check_positive(self, "repeats", "steps", "fill", "calls", integer=True)
        if self.batch_size is not None:
            check_positive(self, "batch_size", integer=True)
        largest = max(self.batch(a, e) for a in self.algos for e in self.envs)
        if self.fill < largest:
            raise SettingsError(
                f"BenchSettings.fill ({self.fill}) must be at least the largest batch size "
                f"measured ({largest})."
            )

    def batch(self, algo: str, env_id: str) -> int:
        """The batch size of ``algo``'s updates on ``env_id``: batch_size, else its training one."""
        if self.batch_size is not None:
            return self.batch_size
        return TrainSettings.for_task(env_id, algo=algo).batch_size


def measure(algo: str, env_id: str, settings: BenchSettings, seed: int = 0) -> dict:
    """One measurement: training steps per second and median action latency (ms), with the
    batch size used."""
    train_settings = TrainSettings.for_task(env_id, algo=algo, seed=seed, progress=False)
    batch_size = settings.batch(algo, env_id)
    torch.manual_seed(seed)
    env = make_env(train_settings, explore=True)
    env.action_space.seed(seed)
    agent = make_agent(train_settings, env)
    n, d = int(np.prod(env.observation_space.shape)), int(np.prod(env.action_space.shape))
    buffer = ReplayBuffer(n, d, settings.fill + settings.steps, seed)

    rollout = Rollout(env, seed=seed)

    def step(policy):
        move = rollout.step(policy)
        buffer.add(move.obs, move.action, move.reward, move.next_obs, move.terminated)
        return move.next_obs

    for _ in range(settings.fill):
        step(lambda obs: env.action_space.sample())
    start = time.perf_counter()
    for _ in range(settings.steps):
        obs = step(lambda obs: agent.act(obs, explore=True))
        agent.update(buffer.sample(batch_size, agent.span_steps))
    sps = settings.steps / (time.perf_counter() - start)

    latencies = np.empty(settings.calls)
    for i in range(settings.calls):
        t0 = time.perf_counter()
        agent.act(obs, explore=False)
        latencies[i] = time.perf_counter() - t0
    env.close()
    return {"sps": sps, "latency_ms": 1e3 * float(np.median(latencies)), "batch_size": batch_size}


def summarise(rows: pd.DataFrame, reference: str = "cqsm") -> pd.DataFrame:
    """Median, min and max over repeats per (env, algo), and the reference's speed ratio to each
    algorithm (reference steps/s divided by theirs, from the medians)."""
    stats = rows.groupby(["env", "algo"], sort=False).agg(
        sps=("sps", "median"),
        sps_min=("sps", "min"),
        sps_max=("sps", "max"),
        latency_ms=("latency_ms", "median"),
        latency_min=("latency_ms", "min"),
        latency_max=("latency_ms", "max"),
        repeats=("sps", "size"),
        batch_size=("batch_size", "first"),
    )
    stats = stats.reset_index()
    if reference in set(stats["algo"]):
        ref = stats[stats["algo"] == reference].set_index("env")["sps"]
        stats[f"{reference}_speedup"] = stats["env"].map(ref) / stats["sps"]
    return stats


def both_runs(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    """The configurations (task, algorithm, batch) that two :func:`summarise` tables both
    measured: ``env, algo, batch_size``, each run's median steps/s (``sps``, ``sps_again``) and
    the second's relative ``difference`` from the first."""
    keys = ["env", "algo", "batch_size"]
    both = first.merge(second, on=keys, suffixes=("", "_again"))
    both["difference"] = both["sps_again"] / both["sps"] - 1
    return both[[*keys, "sps", "sps_again", "difference"]]


def speedups(runs: dict, over: str, reference: str = "cqsm") -> pd.DataFrame:
    """The reference's speed over the algorithm ``over``: one row per task, one column per run
    of ``runs`` (a name and its :func:`summarise` table)."""
    columns = {
        name: table[table["algo"] == over].set_index("env")[f"{reference}_speedup"]
        for name, table in runs.items()
    }
    return pd.DataFrame(columns).rename_axis(index="env", columns="run")


def relative_speed(summary: pd.DataFrame, to: str = "td3") -> pd.DataFrame:
    """Each algorithm's training speed as a fraction of the speed of ``to`` on the same task:
    one row per task, one column per algorithm (of a :func:`summarise` table)."""
    if to not in set(summary["algo"]):
        raise ValueError(
            f"The benchmark has no {to!r} rows; it measured {sorted(set(summary.algo))}."
        )
    sps = summary.pivot(index="env", columns="algo", values="sps")
    return sps.div(sps[to], axis=0).rename_axis(columns=None)


def bench(settings: BenchSettings) -> pd.DataFrame:
    """Run (or finish) the benchmark; return the summary table."""
    torch.set_num_threads(1)
    out = Path(settings.out)
    saved_settings = out / "settings.json"
    if saved_settings.exists() and not settings.fresh:
        saved = results.read_json(saved_settings)
        if results.changed_settings(saved, settings, free={"progress", "out", "fresh"}):
            raise results.RunError(
                f"{out} holds a benchmark with other settings; measure again with fresh=True "
                "(--fresh), or choose another out folder."
            )
    results.write_json(saved_settings, settings)
    rows = [] if settings.fresh else results.read_rows(out / "results.csv")
    done = {(r["repeat"], r["algo"], r["env"]) for r in rows}
    pairs = [(a, e) for e in settings.envs for a in settings.algos]
    plan = [
        (repeat, *pairs[(i + repeat) % len(pairs)])  # rotate the order in each repeat
        for repeat in range(settings.repeats)
        for i in range(len(pairs))
    ]
    where = results.provenance(torch_threads=1)
    if len(done) == len(plan) and not settings.fresh:
        print(f"bench: all {len(plan)} measurements are already in {out}; --fresh measures again")
    for repeat, algo, env_id in tqdm(plan, disable=not settings.progress, desc="bench"):
        if (repeat, algo, env_id) in done:
            continue
        rows.append(
            {"repeat": repeat, "algo": algo, "env": env_id} | measure(algo, env_id, settings)
        )
        results.write_rows(out / "results.csv", rows)
    summary = summarise(pd.DataFrame(rows))
    results.write_rows(out / "summary.csv", summary.to_dict("records"))
    results.write_json(out / "provenance.json", where)
    return summary


def markdown(summary: pd.DataFrame) -> str:
    """The summary as a Markdown table (what ``cqsm bench`` prints): medians with (min–max)."""
    speedups = [c for c in summary.columns if c.endswith("_speedup")]
    columns = ["env", "algo", "batch", "training steps/s", "act latency (ms)", *speedups]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in summary.to_dict("records"):
        cells = [
            r["env"],
            r["algo"],
            str(r["batch_size"]),
            f"{r['sps']:.1f} ({r['sps_min']:.1f}–{r['sps_max']:.1f})",
            f"{r['latency_ms']:.2f} ({r['latency_min']:.2f}–{r['latency_max']:.2f})",
            *(f"{r[c]:.2f}" for c in speedups),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bench_machine(out) -> dict:
    """The machine a committed benchmark run in ``out`` was measured on (its provenance's
    ``machine``: platform, CPU model and capability where recorded, CPUs, threads)."""
    return results.read_json(Path(out) / "provenance.json")["machine"]


def same_machine(*outs) -> bool:
    """Whether the benchmark runs in ``outs`` were measured on one machine type: the same
    recorded CPU model, torch CPU capability, CPU count and platform (False where a run does
    not record its CPU)."""
    keys = ("cpu", "cpu_capability", "cpus", "platform")
    machines = [bench_machine(out) for out in outs]
    types = {tuple(m.get(k) for k in keys) for m in machines}
    return all(m.get("cpu") for m in machines) and len(types) == 1


def read_bench(out) -> tuple[pd.DataFrame, str]:
    """A committed benchmark run in ``out``: its summary (``summary.csv``) and a line saying
    where it was measured (the commit, torch, the machine's CPUs and their model where
    the provenance names it), from its
    ``provenance.json``."""
    out = Path(out)
    for name in ("summary.csv", "provenance.json"):
        if not (out / name).exists():
            raise results.RunError(
                f"{out} holds no benchmark run ({name} is missing): run `cqsm bench --out {out}`."
            )
    where = results.read_json(out / "provenance.json")
    line = (
        f"{out.name}: measured at commit {where['git']['commit'][:12]}, "
        f"torch {where['packages']['torch']}, {where['machine']['cpus']} CPUs "
        f"({where['machine'].get('cpu') or where['machine']['processor']})"
    )
    return pd.read_csv(out / "summary.csv"), line
