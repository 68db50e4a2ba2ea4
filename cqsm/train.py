"""The one training loop of every algorithm: seeding, replay, warm-up, evaluation, checkpoints.

    from cqsm.train import TrainSettings, train
    result = train(TrainSettings.for_task("Pendulum-v1", algo="cqsm", total_steps=15_000))

Each environment step: act (uniformly random during warm-up), step the env, store the transition,
and once past ``learning_starts`` make one agent update. Every ``eval_every`` steps, ``n_eval``
episodes without exploration noise give one tidy row. A checkpoint is written at the first episode
end after every ``checkpoint_every`` steps (the env is then between episodes, so its whole state is
its random generators), and ``resume=True`` continues from it exactly: the rows come out the same
as those of an uninterrupted run. A non-finite loss or an exploding critic stops the run with
:class:`TrainingDiverged`, and the last good checkpoint is kept.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from cqsm import envs, results
from cqsm.agents import agent_class
from cqsm.evaluation import evaluate
from cqsm.presets import TASKS
from cqsm.replay import ReplayBuffer
from cqsm.settings import SettingsError, check_positive

__all__ = ["TrainSettings", "TrainResult", "TrainingDiverged", "train", "make_env", "make_agent"]


def _preset(env: str, part: str) -> dict:
    """The task's row of :data:`cqsm.presets.TASKS` for ``part`` (``"train"`` or an algorithm)."""
    return TASKS.get(env, {}).get(part, {})


def _loop_preset(env: str, algo: str, task_presets: bool = True) -> dict:
    """Loop settings: the algorithm's published defaults, then the task's, then the task's
    for this algorithm (key ``"train/<algo>"``)."""
    defaults = getattr(agent_class(algo), "TRAIN_DEFAULTS", {})
    if not task_presets:
        return dict(defaults)
    return defaults | _preset(env, "train") | _preset(env, f"train/{algo}")


class TrainingDiverged(RuntimeError):
    """A run stopped because its losses or values stopped being finite or exploded."""


@dataclass
class TrainSettings:
    """Settings of one training run (the loop; the algorithm's own settings are in ``agent``)."""

    algo: str = "cqsm"
    """algorithm: one of cqsm.agents.ALGOS"""
    env: str = "Pendulum-v1"
    """Gymnasium environment id (a Box action space)"""
    seed: int = 0
    """seed of torch, the replay sampler, the env and the exploration noise"""
    total_steps: int = 20_000
    """environment steps (control steps) to train for"""
    learning_starts: int = 5_000
    """uniformly random actions for this many steps before the first update"""
    batch_size: int = 256
    """transitions per update"""
    buffer_size: int = 1_000_000
    """replay capacity in transitions"""
    eval_every: int = 5_000
    """evaluate every this many steps"""
    n_eval: int = 10
    """episodes per evaluation, without exploration noise"""
    checkpoint_every: int = 10_000
    """write a checkpoint at the first episode end after every this many steps"""
    action_repeat: int = 1
    """env steps per control step (the control interval is action_repeat * env.dt)"""
    max_abs_q: float = 1e6
    """divergence guard: stop when the mean critic value exceeds this in magnitude"""
    torch_threads: int = 1
    """torch threads of this process (run several processes side by side instead)"""
    out: str = "runs"
    """folder that holds the run folder <algo>-<env>-s<seed>"""
    resume: bool = False
    """continue the run in the run folder from its checkpoint"""
    progress: bool = True
    """show a progress bar"""
    tensorboard: bool = False
    """also write TensorBoard logs to the run folder (needs the tensorboard package)"""
    agent: Any = None
    """the algorithm's settings dataclass (None: its defaults with the task's overrides)"""

    def __post_init__(self):
        check_positive(
            self,
            "total_steps",
            "batch_size",
            "buffer_size",
            "eval_every",
            "n_eval",
            "checkpoint_every",
            "action_repeat",
            "torch_threads",
            integer=True,
        )
        if self.learning_starts < 0:
            raise SettingsError(
                f"TrainSettings.learning_starts must be >= 0; got {self.learning_starts}."
            )
        cls = agent_class(self.algo).Settings
        if self.agent is None:
            self.agent = cls(**_preset(self.env, self.algo))
        elif isinstance(self.agent, dict):
            self.agent = cls(**self.agent)
        elif not isinstance(self.agent, cls):
            raise SettingsError(
                f"TrainSettings.agent must be a {cls.__name__} for algo {self.algo!r}."
            )

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
        task's row of :data:`cqsm.presets.TASKS`, then ``overrides``."""
        settings = _loop_preset(env, algo, task_presets) | overrides
        agent_settings = (_preset(env, algo) if task_presets else {}) | (agent or {})
        return cls(
            env=env, algo=algo, agent=agent_class(algo).Settings(**agent_settings), **settings
        )

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / results.run_name(self.algo, self.env, self.seed)


@dataclass
class TrainResult:
    """What :func:`train` returns: the run folder, its tidy rows and the trained agent."""

    run_dir: Path
    rows: pd.DataFrame
    agent: Any = field(repr=False)


def make_env(settings: TrainSettings, explore: bool, render_mode: str | None = None):
    """The env the agent acts in: ``gymnasium.make`` wrapped as the algorithm needs."""
    env = envs.make(settings.env, **({"render_mode": render_mode} if render_mode else {}))
    return agent_class(settings.algo).wrap(env, settings.agent, explore, settings.action_repeat)


def warmup_action(agent, env, obs):
    """The uniformly random action of the warm-up: a draw of the env's action space, which an
    agent with a ``warmup_action`` (CQSM) turns into its own warm-up action."""
    draw = env.action_space.sample()
    return agent.warmup_action(obs, draw) if hasattr(agent, "warmup_action") else draw


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
    saved, mine = results.read_json(saved_path), results.plain(settings)
    free = {"total_steps", "resume", "progress", "tensorboard", "out"}
    differ = results.changed_settings(saved, settings, free)
    if differ:
        detail = "; ".join(f"{k}: saved {saved.get(k)!r}, now {mine[k]!r}" for k in differ)
        raise results.RunError(f"Cannot resume {run_dir} with different settings ({detail}).")


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
    (for example the LQ agent's distance from the Riccati solution, :mod:`cqsm.deep_lq`).
    """
    s = settings
    torch.set_num_threads(s.torch_threads)
    run_dir = s.run_dir
    _check_settings(run_dir, s, s.resume)
    checkpoint_path = run_dir / "checkpoint.pt"

    torch.manual_seed(s.seed)
    env, eval_env = make_env(s, explore=True), make_env(s, explore=False)
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
        rows = [r for r in results.read_rows(run_dir / "results.csv") if r["step"] <= step]
        env.reset(seed=s.seed)  # builds the env's generators; their states come next
        _set_rng_states(env, state["rng"])
    results.write_json(run_dir / "settings.json", s)

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
    obs, episode_return, checkpoint_due = None, 0.0, False
    interval_start, interval_steps, clock = time.perf_counter(), 0, time.perf_counter()

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
        if obs is None:  # between episodes: the only place a checkpoint is written
            if checkpoint_due:
                save()
                checkpoint_due = False
            obs, _ = env.reset(seed=s.seed if episodes == 0 and step == 0 else None)
            episode_return = 0.0
        if step < s.learning_starts:
            action = warmup_action(agent, env, obs)
        else:
            action = agent.act(obs, explore=True)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated)
        obs, episode_return = next_obs, episode_return + reward
        step += 1
        interval_steps += 1
        if step > s.learning_starts:
            info = agent.update(buffer.sample(s.batch_size))
            guard.check(info, step, last_good)
            for k, v in info.items():
                diagnostics.setdefault(k, []).append(v)
        if terminated or truncated:
            train_returns.append(episode_return)
            episodes += 1
            obs = None
        if step % s.checkpoint_every == 0:
            checkpoint_due = True
        if step % s.eval_every == 0 or step == s.total_steps:
            sps = interval_steps / (time.perf_counter() - interval_start)
            returns = evaluate(agent, eval_env, s.n_eval, s.seed)
            row = {
                "algo": s.algo,
                "env": s.env,
                "seed": s.seed,
                "step": step,
                "eval_return": float(returns.mean()),
                "eval_return_std": float(returns.std()),
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
    if obs is None:
        save()  # the run ended between episodes: it can be extended exactly from here
    results.save_checkpoint(
        run_dir / "policy.pt", {"policy": agent.policy_state_dict(), "step": step}
    )
    if writer is not None:
        writer.close()
    return TrainResult(run_dir, pd.DataFrame(rows), agent)
