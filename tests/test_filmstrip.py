"""Filmstrips of a trained policy: frames of an evaluation episode of a tiny MuJoCo run (shapes,
spacing, determinism, the evaluation's own episode), the files write_filmstrip writes and keeps,
the errors of bad input, and the committed filmstrips of the results chapter."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_train import tiny

from cqsm.rl import filmstrip, results
from cqsm.rl.evaluation import EVAL_SEED_BASE, evaluate
from cqsm.rl.filmstrip import (
    COLUMNS,
    RendererError,
    load_frames,
    read_filmstrip,
    render_episode,
    write_filmstrip,
)
from cqsm.rl.runs import load_run
from cqsm.rl.train import train

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "paper_figures/results/four_tasks/filmstrip"
SMALL = {"width": 64, "height": 48}


@pytest.fixture(scope="module")
def renderer():
    """The offscreen renderer MUJOCO_GL names, probed once: skip where it cannot start."""
    import gymnasium as gym

    try:
        env = gym.make("InvertedPendulum-v5", render_mode="rgb_array", width=16, height=16)
        try:
            env.reset(seed=0)
            frame = env.render()
        finally:
            env.close()
    except Exception as err:  # noqa: BLE001 - whatever stops the renderer skips these tests
        gl = os.environ.get("MUJOCO_GL")
        pytest.skip(
            f"no offscreen renderer (MUJOCO_GL={gl}: {type(err).__name__}: {err}); "
            "install libegl1 libegl-mesa0 libgl1-mesa-dri, or libosmesa6 with MUJOCO_GL=osmesa"
        )
    assert frame.shape == (16, 16, 3)
    return os.environ["MUJOCO_GL"]


@pytest.fixture(scope="module")
def run(tmp_path_factory, renderer):
    """A tiny CQSM run on InvertedPendulum-v5, trained once for the module."""
    settings = tiny(tmp_path_factory.mktemp("runs"), env="InvertedPendulum-v5")
    train(settings)
    return settings.run_dir


def test_frames_are_rgb_evenly_spaced_and_differ(run, renderer):
    strip = render_episode(run, frames=3, **SMALL)
    assert strip.frames.shape == (3, 48, 64, 3) and strip.frames.dtype == np.uint8
    assert strip.steps[0] == 0 and strip.times[0] == 0.0
    np.testing.assert_allclose(strip.times, strip.steps * strip.dt)
    np.testing.assert_allclose(np.diff(strip.times), np.diff(strip.times)[0])
    assert strip.dt == pytest.approx(0.04)  # InvertedPendulum-v5's own interval
    assert strip.steps[-1] <= strip.span_steps < strip.steps[-1] + 2  # the span's end
    assert not np.array_equal(strip.frames[0], strip.frames[-1])
    assert strip.frames.std() > 0  # not a blank image
    assert strip.renderer == renderer
    assert strip.returns[0] == 0.0 and np.all(np.diff(strip.returns) > 0)  # +1 per step alive


def test_the_same_run_gives_the_same_frames(run, renderer):
    first = render_episode(run, frames=2, **SMALL)
    second = render_episode(run, frames=2, **SMALL)
    assert np.array_equal(first.frames, second.frames)
    assert np.array_equal(first.steps, second.steps)


def test_the_episode_is_an_evaluation_episode(run, renderer):
    settings, env, agent = load_run(run)
    step = int(results.load_checkpoint(run / "policy.pt", weights_only=True)["step"])
    returns = evaluate(agent, env, 2, settings.seed, step=step)
    env.close()
    for i in (0, 1):
        strip = render_episode(run, frames=2, episode=i, width=16, height=16)
        assert strip.ended and strip.steps[-1] == strip.span_steps  # two frames: reset and end
        assert strip.returns[-1] == pytest.approx(returns[i], rel=1e-12)
        assert strip.start_seed == EVAL_SEED_BASE + 1000 * settings.seed + i
        assert strip.policy_step == step


def test_seconds_bound_the_span(run, renderer):
    strip = render_episode(run, frames=2, seconds=0.1, width=16, height=16)
    assert strip.span_steps == 2 and strip.steps.tolist() == [0, 2]  # 0.1 s of 0.04 s steps
    assert strip.times[-1] == pytest.approx(0.08) and not strip.ended
    with pytest.raises(ValueError, match="fewer frames or more seconds"):
        render_episode(run, frames=4, seconds=0.1, width=16, height=16)


def test_write_filmstrip_writes_keeps_and_rewrites(run, renderer, tmp_path, monkeypatch):
    out = tmp_path / "strip"
    table = write_filmstrip([run], out, frames=2, progress=False, **SMALL)
    png = out / f"{run.name}.png"
    assert list(table.columns) == list(COLUMNS) and len(table) == 2
    assert table["file"].tolist() == [png.name] * 2 and table["frame"].tolist() == [0, 1]
    pd.testing.assert_frame_equal(read_filmstrip(out), table, check_dtype=False)
    image = load_frames(out, run)
    assert image.shape == (48, 128, 3) and image.dtype == np.uint8
    frames = load_frames(out, run.name, split=True)
    assert np.array_equal(frames, render_episode(run, frames=2, **SMALL).frames)
    made = results.read_json(out / "provenance.json")
    entry = made["runs"][run.name]
    assert entry["run"] == results.portable(run) and entry["frames"] == 2
    assert entry["run_commit"] == results.read_json(run / "provenance.json")["git"]["commit"]
    assert made["renderer"] == renderer and entry["renderer"] == renderer
    assert made["mujoco"] and "commit" in made["git"]

    calls = []
    real = filmstrip.render_episode

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(filmstrip, "render_episode", counted)
    before = png.stat().st_mtime_ns
    write_filmstrip([run], out, frames=2, progress=False, **SMALL)
    assert calls == [] and png.stat().st_mtime_ns == before  # finished: skipped
    again = write_filmstrip([run], out, frames=3, force=True, progress=False, **SMALL)
    assert len(calls) == 1 and len(again) == 3
    assert load_frames(out, run).shape == (48, 192, 3)


def test_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="frames must be"):
        render_episode(tmp_path, frames=0)
    with pytest.raises(ValueError, match="frames must be"):
        write_filmstrip([tmp_path], tmp_path / "out", frames=0, progress=False)
    with pytest.raises(results.RunError, match="not a run folder"):
        render_episode(tmp_path)
    with pytest.raises(results.RunError, match="Not run folders"):
        write_filmstrip([tmp_path], tmp_path / "out", progress=False)
    with pytest.raises(results.RunError, match="no filmstrip.csv"):
        read_filmstrip(tmp_path)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_renderer_that_cannot_start_says_what_to_do(run, monkeypatch):
    monkeypatch.setenv("MUJOCO_GL", "no-such-renderer")
    with pytest.raises(RendererError, match="MUJOCO_GL=egl .* MUJOCO_GL=osmesa"):
        render_episode(run, frames=2, width=16, height=16)


def test_the_committed_filmstrips_name_their_files_and_runs():
    table = read_filmstrip(COMMITTED)
    assert list(table.columns) == list(COLUMNS)
    made = results.read_json(COMMITTED / "provenance.json")
    for file, rows in table.groupby("file"):
        path = COMMITTED / file
        assert path.exists() and path.stat().st_size < 300_000
        assert rows["frame"].tolist() == list(range(8))
        assert rows["sim_time"].max() <= 2.0 + 1e-9
        np.testing.assert_allclose(np.diff(rows["sim_time"]), np.diff(rows["sim_time"])[0])
        image = load_frames(COMMITTED, file.removesuffix(".png"))
        assert image.shape == (240, 8 * 320, 3)
        run = rows["run"].iloc[0]
        entry = made["runs"][Path(run).name]
        assert entry["run"] == run and (ROOT / run / "settings.json").exists()
        own = results.read_json(ROOT / run / "provenance.json")["git"]["commit"]
        assert entry["run_commit"] == own and entry["renderer"] in {"egl", "osmesa", "glfw"}
    # CQSM's seed-1 policy of each task that has one, the first two tasks at least
    from cqsm.rl.four_tasks import TASKS

    names = {Path(r).name for r in table["run"]}
    assert {"cqsm-HalfCheetah-v5-s1", "cqsm-Hopper-v5-s1"} <= names
    assert names <= {f"cqsm-{env}-s1" for env in TASKS}
