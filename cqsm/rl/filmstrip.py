"""Filmstrips of a trained policy: frames of one evaluation episode, rendered once, headless.

    strip = render_episode("paper_figures/results/control_interval/native/cqsm-Hopper-v5-s1")
    write_filmstrip(run_dirs, "paper_figures/results/four_tasks/filmstrip", seconds=2.0)
    plt.imshow(load_frames("paper_figures/results/four_tasks/filmstrip", "cqsm-Hopper-v5-s1"))

MuJoCo renders offscreen through the OpenGL platform that ``MUJOCO_GL`` names (``egl``: EGL,
Mesa's software rasteriser where there is no GPU; ``osmesa``: OSMesa; ``glfw``: a window
system). Importing this module sets it to ``egl`` where it is unset; set it before mujoco is
imported to choose another. Frames are rendered once and committed (a PNG per run, a CSV of
the frames and a ``provenance.json`` naming the runs, the renderer and the code's commit), so a
chapter draws them with ``imshow`` at every profile without a renderer.

The episode is an episode of the run's evaluation protocol (:func:`cqsm.rl.evaluation.evaluate`
at the saved policy's step, as :mod:`cqsm.rl.smoothness` measures): episode ``i`` starts from
the env seed of :func:`cqsm.rl.evaluation.episode_seed` and the agent acts without exploration,
with torch's generator seeded by :func:`cqsm.rl.evaluation.eval_seed` of the run's seed and the
policy's step (the evaluation episodes before ``i`` are played first, so that whatever an agent
draws while acting is drawn as in the evaluation). Its return over the whole episode is the
``i``-th of the returns behind the last row of the run's ``results.csv``. The frames are evenly
spaced in control steps, so in simulated time (a step lasts the run's control interval).
"""

from __future__ import annotations

import os

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cqsm.atomic import atomic_write
from cqsm.rl import results
from cqsm.rl.envs import interval_of
from cqsm.rl.evaluation import episode_seed, eval_seed
from cqsm.rl.rollout import episode as play_episode

__all__ = [
    "COLUMNS",
    "Filmstrip",
    "RendererError",
    "render_episode",
    "write_filmstrip",
    "read_filmstrip",
    "load_frames",
]

# The columns of filmstrip.csv, in this order: one row per frame.
COLUMNS = (
    "run",
    "env",
    "algo",
    "seed",
    "frame",
    "sim_time",
    "file",
    "step",
    "dt",
    "return_so_far",
    "episode",
    "start_seed",
    "policy_step",
)

_HINT = (
    "Set MUJOCO_GL=egl (needs libegl1 with Mesa's libegl-mesa0 and libgl1-mesa-dri, or a GPU "
    "driver) or MUJOCO_GL=osmesa (needs libosmesa6) before mujoco is imported, and install "
    "what it needs (apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri, or libosmesa6)."
)


class RendererError(RuntimeError):
    """The offscreen renderer cannot start on this machine, and what to set or install."""


@dataclass(frozen=True)
class Filmstrip:
    """Frames of one evaluation episode of a run, evenly spaced in simulated time."""

    frames: np.ndarray
    """``(n, height, width, 3)`` uint8 RGB"""
    steps: np.ndarray
    """control steps since the episode's reset at each frame (0: the reset state)"""
    times: np.ndarray
    """simulated seconds at each frame: ``steps * dt``"""
    returns: np.ndarray
    """the episode's return so far at each frame (the rewards of the steps before it), in the
    env's native units (:attr:`cqsm.rl.envs.Interval.reward_scale`)"""
    dt: float
    """the run's control interval, seconds"""
    episode: int
    """which evaluation episode (0: the first)"""
    start_seed: int
    """the env seed the episode was reset with"""
    policy_step: int
    """the training step of the policy that acts"""
    span_steps: int
    """control steps in the span the frames cover (the first ``seconds``, or the episode)"""
    ended: bool
    """the episode ended (a terminal state or its time limit) within the span"""
    renderer: str
    """the OpenGL platform that rendered the frames (``MUJOCO_GL``)"""
    camera: str | None
    """the model's camera the frames are seen from (None: the env's own view)"""


def _check(frames, seconds, width, height, episode) -> None:
    def whole(value) -> bool:
        return isinstance(value, int | np.integer) and not isinstance(value, bool)

    if not whole(frames) or frames < 1:
        raise ValueError(f"frames must be a whole number of frames, at least 1; got {frames!r}.")
    for name, value in (("width", width), ("height", height)):
        if not whole(value) or value < 1:
            raise ValueError(f"{name} must be a positive whole number of pixels; got {value!r}.")
    if not whole(episode) or episode < 0:
        raise ValueError(
            f"episode must be the index of an evaluation episode (0, 1, ...); got {episode!r}."
        )
    if seconds is not None:
        number = isinstance(seconds, int | float | np.number) and not isinstance(seconds, bool)
        if not number or not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"seconds must be a positive number or None; got {seconds!r}.")


def _policy_step(run_dir: Path) -> int:
    """The training step of the policy :func:`cqsm.rl.runs.load_run` loads."""
    policy = run_dir / "policy.pt"
    if policy.exists():
        return int(results.load_checkpoint(policy, weights_only=True)["step"])
    return int(results.load_checkpoint(run_dir / "checkpoint.pt")["step"])


def _set_view(env, width: int, height: int, camera: str | None) -> str | None:
    """Render a MuJoCo env at ``width`` x ``height`` from its model's camera ``camera`` where
    the model has one (before the first frame); returns the camera used (None: the env's own
    view). Other envs keep their own size and view."""
    base = env.unwrapped
    renderer = getattr(base, "mujoco_renderer", None)
    if renderer is None:
        return None
    mujoco = _mujoco()
    base.width, base.height = width, height
    renderer.width, renderer.height = width, height
    vis = base.model.vis.global_  # the offscreen buffer, copied when the context is made
    vis.offwidth, vis.offheight = max(vis.offwidth, width), max(vis.offheight, height)
    if camera is None:
        return None
    found = mujoco.mj_name2id(base.model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
    if found < 0:
        return None
    renderer.camera_id = found
    return camera


def _play(env, agent, seed: int, step: int, index: int, limit: float, at):
    """Evaluation episodes ``0..index`` of a run as :func:`cqsm.rl.evaluation.evaluate` plays
    them; in episode ``index``, ``at(k)`` is called at the state after each ``k`` control steps
    and the episode stops after ``limit`` steps. Returns that episode's rewards and whether it
    ended (a terminal state or its time limit)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(eval_seed(seed, step))
        for i in range(index + 1):
            last, rewards = i == index, []

            def act(obs, last=last, rewards=rewards):
                if last:
                    at(len(rewards))
                return agent.act(obs, explore=False)

            done = False
            for move in play_episode(env, act, seed=episode_seed(seed, i)):
                rewards.append(float(move.reward))
                done = move.done
                if last and len(rewards) >= limit:
                    break
        at(len(rewards))  # the state after the last step played
    return rewards, done


def render_episode(
    run_dir,
    frames: int = 8,
    seconds: float | None = None,
    width: int = 480,
    height: int = 320,
    episode: int = 0,
    camera: str | None = "track",
) -> Filmstrip:
    """``frames`` frames (``height`` x ``width`` RGB; MuJoCo envs) of evaluation episode
    ``episode`` of the saved run ``run_dir``, evenly spaced over its first ``seconds`` of
    simulated time (None: the whole episode, up to its time limit), seen from the model's
    camera ``camera``: ``"track"``, the side view that follows the body's centre of mass in the
    MuJoCo locomotion tasks (Gymnasium's own default view stays put, and a runner leaves it),
    or the env's own view where the model has no such camera or ``camera`` is None.

    The span holds ``S`` control steps (``floor(seconds / dt)``, or fewer where the episode ends
    first); the frames lie every ``S // (frames - 1)`` steps from the reset state on, so the last
    lies at the span's end or up to ``frames - 2`` steps before it. The episode is played once
    to find its span and once to render it, and the two must agree step for step.

    Raises :class:`cqsm.rl.results.RunError` for a folder that is not a run,
    :class:`RendererError` where the renderer cannot start, and ``ValueError`` for bad
    arguments or a span with fewer than ``frames - 1`` steps.
    """
    _check(frames, seconds, width, height, episode)
    from cqsm.rl.runs import load_run

    run_dir = Path(run_dir)
    if (run_dir / "settings.json").exists():
        _mujoco()  # a renderer that cannot start fails here, not in making the env
    settings, env, agent = load_run(run_dir, render_mode="rgb_array")
    try:
        step = _policy_step(run_dir)
        interval = interval_of(env)
        dt = float(interval.dt)
        limit = math.inf if seconds is None else math.floor(seconds / dt + 1e-9)
        if limit < 1:
            raise ValueError(f"seconds={seconds!r} is shorter than a control step ({dt:g} s).")
        found, ended = _play(env, agent, settings.seed, step, episode, limit, lambda k: None)
        span = len(found)
        if frames > 1 and span < frames - 1:
            raise ValueError(
                f"{frames} frames need at least {frames - 1} control steps of {dt:g} s; the "
                f"span of episode {episode} of {run_dir} holds {span}. Ask for fewer frames"
                + ("." if seconds is None else " or more seconds.")
            )
        stride = span // (frames - 1) if frames > 1 else 0
        wanted = [j * stride for j in range(frames)]
        seen = _set_view(env, width, height, camera)
        shots: dict[int, np.ndarray] = {}

        def at(k: int) -> None:
            if k in wanted and k not in shots:
                shots[k] = _frame(env, first=not shots)

        rewards, _ = _play(env, agent, settings.seed, step, episode, span, at)
        if rewards != found:
            raise RuntimeError(
                f"Episode {episode} of {run_dir} played differently twice; the env or agent is "
                "not deterministic in evaluation, so its frames cannot be placed."
            )
        renderer = _renderer(env)
    finally:
        env.close()
    so_far = np.concatenate([[0.0], np.cumsum(rewards)]) * interval.reward_scale
    steps = np.array(wanted, dtype=np.int64)
    return Filmstrip(
        frames=np.stack([shots[k] for k in wanted]),
        steps=steps,
        times=steps * dt,
        returns=so_far[steps],
        dt=dt,
        episode=episode,
        start_seed=episode_seed(settings.seed, episode),
        policy_step=step,
        span_steps=span,
        ended=ended,
        renderer=renderer,
        camera=seen,
    )


def _cannot_start(err: Exception) -> RendererError:
    gl = os.environ.get("MUJOCO_GL")
    return RendererError(
        f"The offscreen renderer (MUJOCO_GL={gl!r}) cannot start: "
        f"{type(err).__name__}: {err}. {_HINT}"
    )


def _mujoco():
    """mujoco, imported: its import loads the OpenGL platform that ``MUJOCO_GL`` names, and
    fails where that platform's library is missing."""
    try:
        import mujoco
    except ModuleNotFoundError as err:
        if err.name != "mujoco":
            raise _cannot_start(err) from err
        raise
    except Exception as err:  # noqa: BLE001 - PyOpenGL fails in many ways without its library
        raise _cannot_start(err) from err
    return mujoco


def _frame(env, first: bool) -> np.ndarray:
    """``env.render()`` as uint8 RGB; the first frame's failure is the renderer's."""
    if not first:
        return _rgb(env.render())
    try:
        frame = env.render()
    except Exception as err:  # noqa: BLE001 - mujoco and gymnasium raise many kinds here
        raise _cannot_start(err) from err
    return _rgb(frame)


def _rgb(frame) -> np.ndarray:
    if frame is None:
        raise RendererError("The env rendered no frame: it was not made with render_mode.")
    frame = np.asarray(frame)
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise RendererError(f"The env rendered an array of shape {frame.shape}, not RGB.")
    return np.array(frame, dtype=np.uint8)  # a copy: the renderer reuses its buffer


def _renderer(env) -> str:
    """The OpenGL platform that rendered ``env``'s frames (``MUJOCO_GL``'s value)."""
    viewer = getattr(getattr(env.unwrapped, "mujoco_renderer", None), "viewer", None)
    return str(getattr(viewer, "backend", None) or os.environ.get("MUJOCO_GL", ""))


def _run_commit(run_dir: Path) -> str | None:
    made = run_dir / "provenance.json"
    return results.read_json(made).get("git", {}).get("commit") if made.exists() else None


def read_filmstrip(out) -> pd.DataFrame:
    """The frames table ``out/filmstrip.csv`` (:data:`COLUMNS`, one row per frame)."""
    path = Path(out) / "filmstrip.csv"
    if not path.exists():
        raise results.RunError(f"No filmstrip at {out} (no filmstrip.csv); run write_filmstrip.")
    return pd.read_csv(path)


def load_frames(out, run, split: bool = False) -> np.ndarray:
    """The filmstrip PNG of ``run`` (a run folder, or its name) under ``out`` as an
    ``(height, frames * width, 3)`` uint8 array, for ``imshow``; with ``split``, as
    ``(frames, height, width, 3)``, the frame count from ``filmstrip.csv``."""
    import imageio.v3 as iio

    file = f"{Path(run).name}.png"
    path = Path(out) / file
    if not path.exists():
        raise results.RunError(f"No filmstrip of {Path(run).name} at {path}.")
    image = np.asarray(iio.imread(path))[..., :3]
    if not split:
        return image
    n = int((read_filmstrip(out)["file"] == file).sum())
    if n < 1 or image.shape[1] % n:
        raise results.RunError(f"{path} does not match its rows in filmstrip.csv ({n} frames).")
    return np.stack(np.split(image, n, axis=1))


def write_filmstrip(
    run_dirs, out, force: bool = False, progress: bool = True, **render
) -> pd.DataFrame:
    """:func:`render_episode` of each run among ``run_dirs`` (``render``: its arguments),
    written under ``out``: one PNG per run, its frames side by side (``<run folder>.png``),
    ``filmstrip.csv`` (:data:`COLUMNS`) and ``provenance.json`` (per run: its path, the commit
    of its own provenance, the policy's step, the episode, the render settings, the renderer,
    mujoco's version and the code's commit when it was rendered), atomically after each run;
    returns the table.

    Resumable: a run whose PNG and rows exist is kept as it is (whatever ``render`` says now)
    unless ``force``; rows of runs not among ``run_dirs`` are kept.
    """
    import imageio.v3 as iio
    from tqdm.auto import tqdm

    defaults = {
        "frames": 8,
        "seconds": None,
        "width": 480,
        "height": 320,
        "episode": 0,
        "camera": "track",
    }
    unknown = set(render) - set(defaults)
    if unknown:
        raise TypeError(f"Unknown render arguments: {', '.join(sorted(unknown))}.")
    settings = defaults | render
    _check(**{k: v for k, v in settings.items() if k != "camera"})
    out = Path(out)
    run_dirs = [Path(p) for p in run_dirs]
    names = [p.name for p in run_dirs]
    twins = sorted({n for n in names if names.count(n) > 1})
    if twins:
        raise results.RunError(
            f"Runs with the same folder name would share a PNG: {', '.join(twins)}."
        )
    strays = [str(p) for p in run_dirs if not (p / "settings.json").exists()]
    if strays:
        raise results.RunError(f"Not run folders (no settings.json): {', '.join(strays)}.")
    mujoco = _mujoco()
    path, made = out / "filmstrip.csv", out / "provenance.json"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=COLUMNS)
    if list(table.columns) != list(COLUMNS):
        raise results.RunError(f"{path} holds other columns than a filmstrip's; move it away.")
    entries = results.read_json(made).get("runs", {}) if made.exists() else {}
    code = results.provenance()  # before this writes its own tracked files
    start = time.perf_counter()
    rendered = 0
    for run_dir in tqdm(run_dirs, desc="filmstrip", unit="run", disable=not progress):
        file, run = f"{run_dir.name}.png", results.portable(run_dir)
        mine = table["file"] == file
        if mine.any() and set(table.loc[mine, "run"]) != {run} and not force:
            raise results.RunError(
                f"{out / file} is the filmstrip of {table.loc[mine, 'run'].iloc[0]}, not of "
                f"{run}; pass force=True to replace it."
            )
        if not force and mine.any() and (out / file).exists():
            continue
        strip = render_episode(run_dir, **settings)
        saved = results.read_json(run_dir / "settings.json")
        image = np.concatenate(list(strip.frames), axis=1)
        atomic_write(out / file, lambda tmp, image=image: iio.imwrite(tmp, image, extension=".png"))
        rows = pd.DataFrame(
            {
                "run": run,
                "env": saved["env"],
                "algo": saved["algo"],
                "seed": int(saved["seed"]),
                "frame": np.arange(len(strip.steps)),
                "sim_time": strip.times,
                "file": file,
                "step": strip.steps,
                "dt": strip.dt,
                "return_so_far": strip.returns,
                "episode": strip.episode,
                "start_seed": strip.start_seed,
                "policy_step": strip.policy_step,
            },
            columns=COLUMNS,
        )
        kept = table[table["file"] != file]
        table = pd.concat([kept, rows], ignore_index=True) if len(kept) else rows
        table = table.sort_values(["file", "frame"], kind="stable", ignore_index=True)
        atomic_write(path, lambda tmp, table=table: table.to_csv(tmp, index=False))
        rendered += 1
        entries[run_dir.name] = {
            "run": run,
            "run_commit": _run_commit(run_dir),
            "policy_step": strip.policy_step,
            "episode": strip.episode,
            "start_seed": strip.start_seed,
            "span_steps": strip.span_steps,
            "episode_ended": strip.ended,
            **settings,
            "camera_used": strip.camera,
            "renderer": strip.renderer,
            "mujoco": mujoco.__version__,
            "code": code["git"],
        }
        entries = {k: entries[k] for k in sorted(entries) if (table["file"] == f"{k}.png").any()}
        results.write_json(
            made,
            code
            | {
                "renderer": os.environ.get("MUJOCO_GL"),
                "mujoco": mujoco.__version__,
                "runs": entries,
                "runs_rendered": rendered,
                "wall_time": time.perf_counter() - start,
            },
        )
    return table
