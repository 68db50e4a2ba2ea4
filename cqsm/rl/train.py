"""The one training loop of every algorithm: seeding, replay, warm-up, evaluation, checkpoints.

    from cqsm.rl.train import TrainSettings, train
    result = train(TrainSettings.for_task("Pendulum-v1", algo="cqsm", total_steps=15_000))

Each control step (``control_interval`` seconds, the env's own by default, the same for every
algorithm: :mod:`cqsm.rl.envs.interval`): act (uniformly random during warm-up), step the env, store
the transition, and once past ``learning_starts`` make one agent update (or
``updates_per_second`` per simulated second). Every ``eval_every`` steps, ``n_eval`` episodes
without exploration noise, on their own random numbers, give one tidy row; its returns are in the
env's native units at every interval (``eval_return_raw``: the sum of the control steps'
rewards). A checkpoint is written at the first episode
end after every ``checkpoint_every`` steps (the env is then between episodes, so its whole state is
its random generators), and ``resume=True`` continues from it exactly: the rows come out the same
as those of an uninterrupted run. A non-finite loss or an exploding critic stops the run with
:class:`TrainingDiverged`, and the last good checkpoint is kept.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cqsm.rl import envs, presets, results
from cqsm.rl.agents import agent_class
from cqsm.rl.evaluation import evaluate
from cqsm.rl.migrate import migrate_rows, migrate_settings
from cqsm.rl.replay import ReplayBuffer
from cqsm.rl.rollout import Rollout
from cqsm.settings import SettingsError, check_positive

__all__ = [
    "TrainSettings",
    "TrainResult",
    "TrainingDiverged",
    "train",
    "make_env",
    "make_agent",
    "updates_due",
    "Warmup",
    "budget_twin",
]


def _preset(env: str, part: str) -> dict:
    """The task's row of :data:`cqsm.rl.presets.TASKS` for ``part`` (``"train"`` or an
    algorithm)."""
    return presets.TASKS.get(env, {}).get(part, {})


# Budgets in control steps, each of which may be given in simulated seconds instead
# (``<name>_seconds``, or ``total_seconds`` for ``total_steps``), and its default in steps.
BUDGETS = {
    "total_steps": ("total_seconds", 20_000),
    "learning_starts": ("learning_starts_seconds", 5_000),
    "eval_every": ("eval_every_seconds", 5_000),
    "checkpoint_every": ("checkpoint_every_seconds", 10_000),
}
_IN_SECONDS = {seconds: steps for steps, (seconds, _) in BUDGETS.items()}


def budget_twin(name: str) -> str | None:
    """The other way of giving the budget ``name``: ``learning_starts_seconds`` for
    ``learning_starts`` and the other way round (None for a setting that is no budget). A layer
    of settings that gives one replaces what lower layers gave as the other."""
    return _IN_SECONDS.get(name) or BUDGETS.get(name, (None,))[0]


class TrainingDiverged(RuntimeError):
    """A run stopped because its losses or values stopped being finite or exploded."""


@dataclass
class TrainSettings:
    """Settings of one training run (the loop; the algorithm's own settings are in ``agent``).

    The constructor takes the settings as given, on the library's defaults, and applies no
    presets; :meth:`for_task` layers the algorithm's published loop defaults, the task's row
    of :data:`cqsm.rl.presets.TASKS` and CQSM's physical default under the given ones (``cqsm
    train`` uses it). Either way,
    :attr:`sources` says where each value came from. Budgets may be given in control steps or in
    simulated seconds (``total_seconds`` and the other ``*_seconds``), not both; a budget in
    seconds is turned into control steps at the control interval when the settings are made.
    """

    algo: str = "cqsm"
    """algorithm: one of cqsm.rl.agents.ALGOS"""
    env: str = "Pendulum-v1"
    """Gymnasium environment id (a Box action space)"""
    seed: int = 0
    """seed of torch, the replay sampler, the env and the exploration noise"""
    control_interval: float | None = None
    """seconds per control step (None: the env's own dt); a MuJoCo env realises it by its frame
    skip (any whole multiple of its physics step, shorter than its own too), any other env by
    repeating the action over whole native steps; episodes keep their length in seconds"""
    total_steps: int | None = None
    """control steps to train for (default 20000; or give total_seconds)"""
    total_seconds: float | None = None
    """the training budget in simulated seconds instead (total_steps = total_seconds / dt)"""
    learning_starts: int | None = None
    """uniformly random actions for this many control steps before the first update (default
    5000; or give learning_starts_seconds)"""
    learning_starts_seconds: float | None = None
    """the warm-up in simulated seconds instead"""
    warmup_hold: float | None = None
    """seconds each uniformly random warm-up draw is held, at least one control step (a fresh
    draw at the start of each episode and every this many seconds of it); None: a fresh draw
    every control step"""
    updates_per_second: float | None = None
    """agent updates per simulated second once learning starts, spread evenly over the control
    steps (a fraction of one per step allowed); None: one update per control step"""
    batch_size: int = 256
    """transitions per update"""
    buffer_size: int = 1_000_000
    """replay capacity in transitions"""
    eval_every: int | None = None
    """evaluate every this many control steps (default 5000; or give eval_every_seconds)"""
    eval_every_seconds: float | None = None
    """the evaluation period in simulated seconds instead"""
    n_eval: int = 10
    """episodes per evaluation, without exploration noise"""
    checkpoint_every: int | None = None
    """write a checkpoint at the first episode end after every this many control steps (default
    10000; or give checkpoint_every_seconds)"""
    checkpoint_every_seconds: float | None = None
    """the checkpoint period in simulated seconds instead"""
    max_abs_q: float = 1e6
    """divergence guard: stop when the mean critic value exceeds this in magnitude"""
    torch_threads: int = 1
    """torch threads of this process (run several processes side by side instead)"""
    out: str = "runs"
    """folder that holds the run folder <algo>-<env>-s<seed> (<algo>-<env>-dt<seconds>-s<seed>
    at a control interval other than the env's own)"""
    resume: bool = False
    """continue the run in the run folder from its checkpoint"""
    progress: bool = True
    """show a progress bar"""
    tensorboard: bool = False
    """also write TensorBoard logs to the run folder (needs the tensorboard package)"""
    agent: Any = None
    """the algorithm's settings dataclass (None: its defaults)"""
    sources: dict = field(default_factory=dict, compare=False)
    """where each setting came from: default, algorithm, task or user (filled in when made)"""

    def __post_init__(self):
        cls = agent_class(self.algo).Settings
        if self.agent is None:
            self.agent = cls()
        elif isinstance(self.agent, dict):
            self.agent = cls(**self.agent)
        elif not isinstance(self.agent, cls):
            raise SettingsError(
                f"TrainSettings.agent must be a {cls.__name__} for algo {self.algo!r}."
            )
        given = _given_sources(self)
        envs.check_box_actions(self.env, self.algo)  # an unknown env id is refused here too
        if self.control_interval is not None:
            check_positive(self, "control_interval")
        self.control_interval = self.interval.dt
        check_positive(self, "updates_per_second", "warmup_hold", optional=True)
        for steps, (seconds, default) in BUDGETS.items():
            in_seconds = getattr(self, seconds)
            if in_seconds is not None:
                if getattr(self, steps) is not None:
                    raise SettingsError(
                        f"TrainSettings: give {steps} (control steps) or {seconds} (simulated "
                        f"seconds), not both; got {steps}={getattr(self, steps)!r} and "
                        f"{seconds}={in_seconds!r}."
                    )
                if steps == "learning_starts":
                    ok = math.isfinite(in_seconds) and in_seconds >= 0
                else:
                    ok = math.isfinite(in_seconds) and in_seconds > 0
                if not ok:
                    raise SettingsError(
                        f"TrainSettings.{seconds} must be a positive number of seconds; got "
                        f"{in_seconds!r}."
                    )
                given[steps] = f"user ({seconds}={in_seconds!r})"
                count = round(in_seconds / self.control_interval)
                setattr(self, steps, count if steps == "learning_starts" else max(1, count))
                setattr(self, seconds, None)  # resolved: the run counts control steps
            elif getattr(self, steps) is None:
                setattr(self, steps, default)
            given.pop(seconds)
        self.sources = given | {k: v for k, v in self.sources.items() if k not in _IN_SECONDS}
        check_positive(
            self,
            "total_steps",
            "batch_size",
            "buffer_size",
            "eval_every",
            "n_eval",
            "checkpoint_every",
            "torch_threads",
            integer=True,
        )
        if self.learning_starts < 0:
            raise SettingsError(
                f"TrainSettings.learning_starts must be >= 0; got {self.learning_starts}."
            )

    @property
    def interval(self) -> envs.Interval:
        """How the control interval is realised on the env (frame skip or action repeat)."""
        return envs.resolve_interval(self.env, self.control_interval)

    @property
    def warmup_hold_steps(self) -> int:
        """Control steps each warm-up draw is held: ``warmup_hold`` in whole control steps."""
        if self.warmup_hold is None:
            return 1
        return max(1, round(self.warmup_hold / self.control_interval))

    @property
    def sim_seconds(self) -> float:
        """The training budget in simulated seconds."""
        return self.total_steps * self.control_interval

    @classmethod
    def for_task(
        cls,
        env: str,
        algo: str = "cqsm",
        agent: dict | None = None,
        task_presets: bool = True,
        **overrides,
    ):
        """Defaults, then the algorithm's published loop defaults and (``task_presets``) the
        task's row of :data:`cqsm.rl.presets.TASKS` and what the algorithm sets from the env's
        physical units (:func:`cqsm.rl.presets.default`: CQSM's one setting), then
        ``overrides`` and ``agent`` (the user's);
        :attr:`sources` records which layer gave each value. A budget a layer gives in seconds
        replaces what lower layers gave in steps, and the other way round."""
        defaults = getattr(agent_class(algo), "TRAIN_DEFAULTS", {})
        layers = [("algorithm", defaults)]
        own, own_loop = presets.default(env, algo) if task_presets else ({}, {})
        if task_presets:
            layers += [("task", _preset(env, "train")), ("task", _preset(env, f"train/{algo}"))]
            layers += [("physical", own_loop)]
        loop, sources = {}, {}
        for name, layer in [*layers, ("user", overrides)]:
            for key, value in layer.items():
                twin = budget_twin(key)
                if twin not in layer:  # one layer giving both is refused by the constructor
                    loop.pop(twin, None)
                loop[key] = value
                target = _IN_SECONDS.get(key, key)
                sources[target] = f"{name} ({key}={value!r})" if key in _IN_SECONDS else name
        agent_settings = {}
        agent_layers = [("physical", own), ("task", _preset(env, algo) if task_presets else {})]
        for name, layer in [*agent_layers, ("user", agent)]:
            for key, value in (layer or {}).items():
                agent_settings[key] = value
                sources[f"agent.{key}"] = name
        sources |= {"env": "user", "algo": "user"}
        return cls(
            env=env,
            algo=algo,
            agent=agent_class(algo).Settings(**agent_settings),
            sources=sources,
            **loop,
        )

    @classmethod
    def from_saved(cls, saved: dict) -> TrainSettings:
        """The settings of a run's ``settings.json`` (migrated to the current settings first:
        :mod:`cqsm.rl.migrate`)."""
        saved = dict(migrate_settings(saved))
        saved.pop("interval", None)  # a record of how the interval was realised, not a setting
        unknown = set(saved) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise results.RunError(
                f"Saved settings hold {sorted(unknown)}, which TrainSettings does not know; "
                "cqsm.rl.migrate must say how they read now."
            )
        return cls(**saved)

    def record(self) -> dict:
        """What ``settings.json`` holds: every setting (``out`` portable), the resolved interval
        and the budget in simulated seconds."""
        return results.plain(self) | {
            "out": results.portable(self.out),
            "interval": self.interval.record(self.total_steps),
        }

    def describe(self) -> str:
        """The control interval and every setting not at the library's default, with where it
        came from: what ``cqsm train`` prints before it starts."""
        iv = self.interval
        if iv.native:
            how = "the env's own"
        elif iv.frame_skip is not None:
            how = f"frame skip {iv.frame_skip}; the env's own is {iv.native_dt:g} s"
        else:
            how = f"each action held for {iv.repeat} env steps of {iv.native_dt:g} s"
        limit = f", {iv.episode_steps} control steps per episode" if iv.episode_steps else ""
        lines = [
            f"control interval {iv.dt:g} s ({how}{limit}); budget {self.total_steps} steps = "
            f"{self.sim_seconds:g} simulated seconds; settings not at their defaults:"
        ]
        values = results.plain(self)
        for name, source in self.sources.items():
            if source == "default":
                continue
            section, _, key = name.rpartition(".")
            value = values[section][key] if section else values[key]
            lines.append(f"  {name} = {value!r}  ({source})")
        return "\n".join(lines)

    @property
    def run_dir(self) -> Path:
        """The run's folder: ``out/<algo>-<env>-s<seed>`` (``-dt<seconds>`` before the seed at
        a control interval other than the env's own)."""
        interval = self.interval
        dt = None if interval.native else interval.dt
        return Path(self.out) / results.run_name(self.algo, self.env, self.seed, dt)


def _given_sources(settings: TrainSettings) -> dict:
    """``"user"`` for every loop and agent setting that differs from its default, else
    ``"default"``."""
    sources = {}
    for f in dataclasses.fields(settings):
        if f.name in ("agent", "sources"):
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        sources[f.name] = "default" if getattr(settings, f.name) == default else "user"
    agent_defaults = type(settings.agent)()
    for f in dataclasses.fields(settings.agent):
        same = getattr(settings.agent, f.name) == getattr(agent_defaults, f.name)
        sources[f"agent.{f.name}"] = "default" if same else "user"
    return sources


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder, its tidy rows and the trained agent."""

    run_dir: Path
    rows: pd.DataFrame
    agent: Any = field(repr=False)
    start_step: int = 0
    """the step this call started from: 0, or the checkpoint's step when it resumed"""


def make_env(settings: TrainSettings, explore: bool, render_mode: str | None = None):
    """The env the agent acts in: made at the run's control interval (:func:`cqsm.rl.envs.make`),
    then wrapped as the algorithm needs."""
    env = envs.make(
        settings.env,
        settings.control_interval,
        **({"render_mode": render_mode} if render_mode else {}),
    )
    return agent_class(settings.algo).wrap(env, settings.agent, explore)


class Warmup:
    """The uniformly random warm-up: a draw of the env's action space, held for ``hold``
    control steps (a fresh draw at the start of each episode and every ``hold`` steps of it),
    which an agent with a ``warmup_action`` (CQSM) turns into its own warm-up action."""

    def __init__(self, agent, env, hold: int = 1):
        self.agent, self.env, self.hold, self.draw = agent, env, hold, None

    def __call__(self, obs, episode_step: int):
        """The warm-up action at the ``episode_step``-th control step of an episode."""
        if episode_step % self.hold == 0 or self.draw is None:
            self.draw = self.env.action_space.sample()
        own = getattr(self.agent, "warmup_action", None)
        return own(obs, self.draw) if own is not None else self.draw


def make_agent(settings: TrainSettings, env):
    return agent_class(settings.algo)(settings.agent, env)


def _rng_states(env) -> dict:
    state = {
        "env": env.unwrapped.np_random.bit_generator.state,
        "action_space": env.action_space.np_random.bit_generator.state,
        "torch": torch.get_rng_state(),
    }
    if isinstance(env, envs.ActionDiffusionWrapper):
        state["wrapper"] = env.get_wrapper_state()
    return state


def _set_rng_states(env, state: dict) -> None:
    env.unwrapped.np_random.bit_generator.state = state["env"]
    env.action_space.np_random.bit_generator.state = state["action_space"]
    torch.set_rng_state(state["torch"])
    if "wrapper" in state:
        env.set_wrapper_state(state["wrapper"])


def _check_settings(run_dir: Path, settings: TrainSettings, resume: bool) -> None:
    """Refuse to overwrite a run, or to resume one with different settings."""
    saved_path = run_dir / "settings.json"
    if not saved_path.exists():
        return
    if not resume:
        raise results.RunError(
            f"{run_dir} already holds a run. Continue it with resume=True (--resume), or choose "
            "another out folder or seed."
        )
    saved = migrate_settings(results.read_json(saved_path))
    free = {"total_steps", "resume", "progress", "tensorboard", "out", "sources"}
    differ = results.changed_settings(saved, settings, free)
    if differ:
        detail = "; ".join(f"{name}: {old!r} → {new!r}" for name, old, new in differ)
        raise results.RunError(
            f"Cannot resume {run_dir} with different settings ({detail}). Resume with the saved "
            "values, or start a new run in another out folder."
        )


def updates_due(k: int, per_step: float | None) -> int:
    """Agent updates after the ``k``-th control step past the warm-up: one (``per_step`` None),
    else as many as spread ``per_step`` updates per step evenly (0.2: one every fifth step)."""
    if per_step is None:
        return 1
    return math.floor(k * per_step + 1e-9) - math.floor((k - 1) * per_step + 1e-9)


class _Guard:
    """The divergence guard: every update's numbers must be finite and the critic bounded."""

    def __init__(self, max_abs_q: float):
        self.max_abs_q = max_abs_q

    def check(self, info: dict[str, float], step: int, checkpoint: str) -> None:
        bad = [k for k, v in info.items() if not math.isfinite(v)]
        if not bad and abs(info.get("q", 0.0)) <= self.max_abs_q:
            return
        what = (
            f"non-finite {', '.join(bad)}"
            if bad
            else f"mean critic value {info['q']:.3g} beyond max_abs_q={self.max_abs_q:g}"
        )
        raise TrainingDiverged(
            f"Training diverged at step {step}: {what}. {checkpoint} Lower the learning rates, "
            "or raise lam (a slower action), and start again."
        )


def train(settings: TrainSettings, on_eval=None) -> TrainResult:
    """Train one run as ``settings`` says; resumable, atomic, and deterministic for a seed.

    ``on_eval(agent, eval_env)``, if given, returns extra columns for each evaluation's row
    (for example the LQ agent's distance from the Riccati solution, :mod:`cqsm.rl.riccati`).
    """
    s = settings
    torch.set_num_threads(s.torch_threads)
    run_dir = s.run_dir
    _check_settings(run_dir, s, s.resume)
    checkpoint_path = run_dir / "checkpoint.pt"

    torch.manual_seed(s.seed)
    env, eval_env = make_env(s, explore=True), make_env(s, explore=False)
    interval = envs.interval_of(env)
    per_step = None if s.updates_per_second is None else s.updates_per_second * interval.dt
    env.action_space.seed(s.seed)
    agent = make_agent(s, env)
    obs_dim = int(np.prod(env.observation_space.shape))
    buffer = ReplayBuffer(obs_dim, int(np.prod(env.action_space.shape)), s.buffer_size, s.seed)
    step, episodes, rows, train_returns, wall_time = 0, 0, [], [], 0.0
    diagnostics: dict[str, list[float]] = {}
    if s.resume and checkpoint_path.exists():
        state = results.load_checkpoint(checkpoint_path)
        agent.load_state_dict(state["agent"])
        buffer.load_state_dict(state["buffer"])
        step, episodes, wall_time = state["step"], state["episodes"], state["wall_time"]
        train_returns, diagnostics = state["train_returns"], state["diagnostics"]
        saved_rows = pd.DataFrame(results.read_rows(run_dir / "results.csv"))
        if len(saved_rows):  # rows of an older run gain the columns added since
            saved_rows = migrate_rows(saved_rows, results.plain(s))
        rows = [r for r in saved_rows.to_dict("records") if r["step"] <= step]
        env.reset(seed=s.seed)  # builds the env's generators; their states come next
        _set_rng_states(env, state["rng"])
    start_step = step
    results.write_json(run_dir / "settings.json", s.record())

    writer = None
    if s.tensorboard:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ImportError(
                "tensorboard=True needs the tensorboard package: pip install tensorboard"
            ) from None
        writer = SummaryWriter(str(run_dir / "tensorboard"))

    guard = _Guard(s.max_abs_q)

    def kept(at_step: int) -> str:
        return f"The last good checkpoint, {checkpoint_path} (step {at_step}), is kept."

    last_good = kept(step) if checkpoint_path.exists() else "No checkpoint was written yet."
    where = results.provenance()  # the code and machine of this run: looked up once
    bar = tqdm(
        total=s.total_steps,
        initial=step,
        disable=not s.progress,
        unit="step",
        desc=results.run_name(s.algo, s.env, s.seed),
        dynamic_ncols=True,
    )
    rollout = Rollout(env, seed=s.seed if step == 0 else None)
    episode_return, checkpoint_due = 0.0, False
    interval_start, interval_steps, clock = time.perf_counter(), 0, time.perf_counter()

    warmup = Warmup(agent, env, s.warmup_hold_steps)

    def policy(obs):
        if step < s.learning_starts:
            return warmup(obs, rollout.episode_step)
        return agent.act(obs, explore=True)

    def save():
        nonlocal last_good
        results.save_checkpoint(
            checkpoint_path,
            {
                "step": step,
                "episodes": episodes,
                "wall_time": wall_time + time.perf_counter() - clock,
                "train_returns": train_returns,
                "diagnostics": diagnostics,
                "agent": agent.state_dict(),
                "buffer": buffer.state_dict(),
                "rng": _rng_states(env),
            },
        )
        last_good = kept(step)

    while step < s.total_steps:
        if rollout.between_episodes:  # the only place a checkpoint is written
            if checkpoint_due:
                save()
                checkpoint_due = False
            episode_return = 0.0
        move = rollout.step(policy)
        buffer.add(move.obs, move.action, move.reward, move.next_obs, move.terminated)
        episode_return += move.reward
        step += 1
        interval_steps += 1
        if step > s.learning_starts:
            for _ in range(updates_due(step - s.learning_starts, per_step)):
                info = agent.update(buffer.sample(s.batch_size, agent.span_steps))
                guard.check(info, step, last_good)
                for k, v in info.items():
                    diagnostics.setdefault(k, []).append(v)
        if move.done:
            train_returns.append(episode_return * interval.reward_scale)  # native units
            episodes += 1
        if step % s.checkpoint_every == 0:
            checkpoint_due = True
        if step % s.eval_every == 0 or step == s.total_steps:
            sps = interval_steps / (time.perf_counter() - interval_start)
            raw = evaluate(agent, eval_env, s.n_eval, s.seed, step=step, native=False)
            returns = raw * interval.reward_scale  # native units
            row = {
                "algo": s.algo,
                "env": s.env,
                "seed": s.seed,
                "step": step,
                "sim_time": step * interval.dt,
                "eval_return": float(returns.mean()),
                "eval_return_std": float(returns.std()),
                "eval_return_raw": float(raw.mean()),
                "train_return": float(np.mean(train_returns[-10:])) if train_returns else np.nan,
                "episodes": episodes,
                "sps": sps,
                "wall_time": wall_time + time.perf_counter() - clock,
            } | {k: float(np.mean(v)) for k, v in diagnostics.items()}
            if on_eval is not None:
                row |= on_eval(agent, eval_env)
            rows.append(row)
            results.write_rows(run_dir / "results.csv", rows)
            results.write_json(
                run_dir / "provenance.json",
                where
                | {
                    "wall_time": row["wall_time"],
                    "steps": step,
                    "sps": float(np.mean([r["sps"] for r in rows])),
                },
            )
            if writer is not None:
                for k, v in row.items():
                    if isinstance(v, float):
                        writer.add_scalar(k, v, step)
            bar.set_postfix(eval_return=f"{row['eval_return']:.1f}", sps=f"{sps:.0f}")
            diagnostics = {}
            interval_start, interval_steps = time.perf_counter(), 0
        bar.update(1)
    bar.close()
    if rollout.between_episodes:
        save()  # the run ended between episodes: it can be extended exactly from here
    results.save_checkpoint(
        run_dir / "policy.pt", {"policy": agent.policy_state_dict(), "step": step}
    )
    if writer is not None:
        writer.close()
    return TrainResult(run_dir, results.tidy(rows), agent, start_step)
