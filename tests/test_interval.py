"""Every setting means what it says: the control interval in seconds for every algorithm, returns
in native units, budgets in simulated seconds, updates per simulated second, one way to build
settings, and bad input refused through ``cqsm train`` as a user meets it."""

import numpy as np
import pandas as pd
import pytest
from test_train import tiny

from cqsm import cli
from cqsm.rl import migrate, results
from cqsm.rl.agents import ALGOS
from cqsm.rl.envs import EnvError, interval_of, make, resolve_interval
from cqsm.rl.evaluation import evaluate
from cqsm.rl.presets import PHYSICAL
from cqsm.rl.runs import load_run
from cqsm.rl.train import TrainSettings, make_agent, make_env, train, updates_due
from cqsm.settings import SettingsError


def test_an_interval_is_a_frame_skip_on_mujoco_and_a_repeat_elsewhere():
    fine = resolve_interval("HalfCheetah-v5", 0.01)
    assert (fine.frame_skip, fine.repeat, fine.episode_steps) == (1, 1, 5000)  # 50 s
    hopper = resolve_interval("Hopper-v5", 0.002)
    assert (hopper.frame_skip, hopper.episode_steps) == (1, 4000)  # 8 s
    coarse = resolve_interval("Hopper-v5", 0.016)
    assert (coarse.frame_skip, coarse.episode_steps) == (8, 500)
    held = resolve_interval("Pendulum-v1", 0.1)
    assert (held.frame_skip, held.repeat, held.episode_steps) == (None, 2, 100)  # 10 s
    own = resolve_interval("HalfCheetah-v5")
    assert own.native and own.dt == 0.05 and own.frame_skip == 5 and own.reward_scale == 1.0
    assert resolve_interval("HalfCheetah-v5", 0.05) == own
    env = make("HalfCheetah-v5", control_interval=0.01)
    assert env.unwrapped.frame_skip == 1 and env.spec.max_episode_steps == 5000
    assert interval_of(env) == fine and fine.reward_scale == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("env_id", "seconds", "allowed"),
    [
        ("HalfCheetah-v5", 0.015, "0.01, 0.02, 0.03"),  # no whole number of physics steps
        ("Hopper-v5", 0.001, "0.002, 0.004"),  # shorter than the physics step
        ("Pendulum-v1", 0.07, "0.05, 0.1, 0.15"),  # no frame skip: whole native steps only
        ("Pendulum-v1", 0.02, "0.05, 0.1"),  # shorter than Pendulum's own step
    ],
)
def test_an_impossible_interval_names_the_allowed_values(env_id, seconds, allowed):
    with pytest.raises(EnvError, match=f"whole multiple.*{allowed}"):
        resolve_interval(env_id, seconds)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_algorithm_acts_at_the_control_interval(tmp_path, algo):
    # Pendulum at 0.1 s: each action is held for two native steps, 100 per 10-second episode
    settings = TrainSettings.for_task("Pendulum-v1", algo=algo, control_interval=0.1)
    env = make_env(settings, explore=False)
    agent = make_agent(settings, env)
    obs, _ = env.reset(seed=0)
    steps, done = 0, False
    while not done:
        obs, _, terminated, truncated, _ = env.step(agent.act(obs, explore=False))
        steps, done = steps + 1, terminated or truncated
    assert steps == 100
    # HalfCheetah at 0.01 s: frame_skip=1 and 5,000-step episodes, whatever the algorithm
    cheetah = make_env(
        TrainSettings.for_task("HalfCheetah-v5", algo=algo, control_interval=0.01), explore=True
    )
    assert cheetah.unwrapped.frame_skip == 1 and cheetah.spec.max_episode_steps == 5000
    assert interval_of(cheetah).dt == 0.01
    # and a run records it: the rows count 100-step episodes, settings.json the interval
    run = train(tiny(tmp_path, algo=algo, control_interval=0.1, total_steps=400, eval_every=200))
    assert list(run.rows["episodes"]) == [2, 4]
    assert list(run.rows["sim_time"]) == pytest.approx([20.0, 40.0])
    saved = results.read_json(run.run_dir / "settings.json")
    assert saved["control_interval"] == 0.1
    assert saved["interval"] | {"total_seconds": 0} == {
        "control_interval": 0.1,
        "native_dt": 0.05,
        "frame_skip": None,
        "repeat": 2,
        "episode_steps": 100,
        "total_seconds": 0,
    }
    assert run.run_dir.name == f"{algo}-Pendulum-v1-dt0.1-s0"


class Constant:
    """An agent that applies one fixed action."""

    def __init__(self, action):
        self.action = np.asarray(action, dtype=np.float32)

    def act(self, obs, explore=False):
        return self.action


def test_returns_are_in_native_units_at_every_interval():
    # A constant action gives the same physics at 0.01 s (frame_skip 1) and at 0.05 s (5): the
    # same trajectory must score the same in native units; the raw sums differ by dt/native_dt.
    agent = Constant(np.linspace(-0.8, 0.8, 6))
    returns = {}
    for dt in (0.01, 0.05):
        env = make("HalfCheetah-v5", control_interval=dt)
        returns[dt] = (evaluate(agent, env, 1, 0)[0], evaluate(agent, env, 1, 0, native=False)[0])
    (fine, fine_raw), (own, own_raw) = returns[0.01], returns[0.05]
    assert fine == pytest.approx(own, rel=1e-9) and own == own_raw
    assert fine == pytest.approx(0.2 * fine_raw, rel=1e-12)
    assert abs(fine_raw) > 2 * abs(own)  # the raw sum counts five times as many rewards
    # a repeated action sums the native rewards already: native and raw agree
    held = make("Pendulum-v1", control_interval=0.1)
    pendulum = Constant([0.5])
    assert evaluate(pendulum, held, 1, 0)[0] == evaluate(pendulum, held, 1, 0, native=False)[0]


@pytest.mark.slow
def test_rows_report_native_and_raw_returns(tmp_path):
    run = train(
        tiny(
            tmp_path,
            "HalfCheetah-v5",
            algo="td3",
            control_interval=0.01,
            total_steps=300,
            learning_starts=100,
            eval_every=300,
            n_eval=1,
        )
    )
    row = run.rows.iloc[-1]
    assert row["eval_return"] == pytest.approx(0.2 * row["eval_return_raw"], rel=1e-12)
    assert row["sim_time"] == pytest.approx(3.0)
    assert run.run_dir.name == "td3-HalfCheetah-v5-dt0.01-s0"


def test_budgets_in_simulated_seconds():
    s = TrainSettings(
        env="Pendulum-v1",
        control_interval=0.1,
        total_seconds=60,
        learning_starts_seconds=5,
        eval_every_seconds=20,
        checkpoint_every_seconds=30,
    )
    assert (s.total_steps, s.learning_starts, s.eval_every, s.checkpoint_every) == (
        600,
        50,
        200,
        300,
    )
    assert s.sim_seconds == pytest.approx(60) and s.total_seconds is None  # resolved to steps
    assert s.sources["total_steps"] == "user (total_seconds=60)"
    with pytest.raises(SettingsError, match="total_steps .* or total_seconds .*not both"):
        TrainSettings(total_steps=100, total_seconds=10)
    with pytest.raises(SettingsError, match="eval_every_seconds must be a positive"):
        TrainSettings(eval_every_seconds=0)
    # a budget a user gives in seconds replaces the task's in steps (HalfCheetah's 10k warm-up)
    cheetah = TrainSettings.for_task("HalfCheetah-v5", algo="td3", learning_starts_seconds=50)
    assert cheetah.learning_starts == 1000 and cheetah.sources["learning_starts"].startswith("user")
    # the same run, whichever unit its budget was given in: one folder, one "done" test
    by_steps = TrainSettings.for_task("Pendulum-v1", total_steps=400, out="x")
    by_seconds = TrainSettings.for_task("Pendulum-v1", total_seconds=20, out="x")
    assert results.plain(by_steps) | {"sources": 0} == results.plain(by_seconds) | {"sources": 0}


def test_updates_per_simulated_second(tmp_path):
    assert [updates_due(k, None) for k in range(1, 5)] == [1, 1, 1, 1]
    assert [updates_due(k, 0.2) for k in range(1, 11)] == [0, 0, 0, 0, 1, 0, 0, 0, 0, 1]
    assert [updates_due(k, 2.5) for k in range(1, 5)] == [2, 3, 2, 3]
    assert sum(updates_due(k, 1 / 3) for k in range(1, 3001)) == 1000
    # 4 updates per simulated second at 0.05 s per step: one every fifth step
    run = train(tiny(tmp_path, total_steps=400, learning_starts=150, updates_per_second=4))
    assert run.agent.updates == 50
    with pytest.raises(SettingsError, match="updates_per_second must be a positive"):
        TrainSettings(updates_per_second=-1)


def test_one_way_to_build_settings():
    # the constructor applies no presets, and says where each value came from
    plain = TrainSettings(env="HalfCheetah-v5", algo="td3")
    assert plain.learning_starts == 5_000 and plain.agent == ALGOS["td3"].Settings()
    assert plain.sources["learning_starts"] == "default" and plain.sources["env"] == "user"
    # for_task layers the algorithm's defaults, the task's and the user's
    layered = TrainSettings.for_task("HalfCheetah-v5", algo="td3", seed=3)
    assert (layered.learning_starts, layered.batch_size) == (10_000, 100)
    assert layered.sources["learning_starts"] == "task"
    assert layered.sources["batch_size"] == "algorithm"
    assert layered.sources["seed"] == "user" and layered.sources["n_eval"] == "default"
    cqsm = TrainSettings.for_task("Hopper-v5", agent={"sigma_a": 0.5})
    assert cqsm.sources["agent.lam"] == "physical" and cqsm.sources["agent.sigma_a"] == "user"
    assert cqsm.sources["agent.tau"] == "default"
    warmup = PHYSICAL["warmup_limits"] * 1000 * 0.008  # whole time limits, in seconds
    assert cqsm.sources["learning_starts"] == f"physical (learning_starts_seconds={warmup!r})"
    lq = TrainSettings.for_task("cqsm/LinearQuadratic-v0")  # the problem's own row instead
    assert lq.sources["agent.lam"] == "task" and lq.sources["agent.relaxation"] == "default"
    # the constructor on the same explicit values gives the same settings
    again = TrainSettings(**{k: v for k, v in layered.__dict__.items() if k != "sources"})
    assert results.plain(again) | {"sources": 0} == results.plain(layered) | {"sources": 0}


def test_settings_json_and_the_printout_say_where_each_value_came_from(tmp_path, capsys):
    args = ["train", "--algo", "td3", "--env", "Pendulum-v1", "--total-steps", "200"]
    args += ["--eval-every", "200", "--n-eval", "1", "--hidden", "16", "--out", str(tmp_path)]
    assert cli.main(args + ["--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "control interval 0.05 s (the env's own, 200 control steps per episode)" in printed
    assert "learning_starts = 1000  (task)" in printed
    assert "agent.hidden = [16]  (user)" in printed
    saved = results.read_json(tmp_path / "td3-Pendulum-v1-s0" / "settings.json")
    assert saved["sources"]["batch_size"] == "algorithm"
    assert saved["sources"]["agent.hidden"] == "user"


def test_resuming_with_a_changed_setting_names_it(tmp_path):
    train(tiny(tmp_path, total_steps=200, agent={"hidden": (32, 32), "lam": 0.01}))
    changed = tiny(tmp_path, total_steps=400, resume=True, agent={"hidden": (32, 32), "lam": 0.5})
    with pytest.raises(results.RunError, match=r"\(agent\.lam: 0\.01 → 0\.5\)"):
        train(changed)


BAD_INPUT = [
    (["--env", "CartPole-v1"], "needs a one-dimensional Box action space"),
    (["--env", "Pendulum-v1", "--control-interval", "0.07"], "whole multiple"),
    (["--env", "Pendulum-v1", "--control-interval", "0.02"], "whole multiple"),
    (["--env", "Pendulum-v1", "--control-interval", "-1"], "control_interval must be a positive"),
    (["--env", "Pendulum-v1", "--updates-per-second", "0"], "updates_per_second must be"),
    (["--env", "Pendulum-v1", "--updates-per-second", "-2"], "updates_per_second must be"),
    (["--env", "Pendulum-v1", "--total-steps", "100", "--total-seconds", "5"], "not both"),
    (["--env", "Pendulum-v1", "--hidden", "0"], "hidden must be positive layer widths"),
    (["--env", "NoSuchEnv-v0"], "Unknown environment"),
]


@pytest.mark.parametrize("algo", sorted(ALGOS))
@pytest.mark.parametrize(("args", "message"), BAD_INPUT, ids=[m for _, m in BAD_INPUT])
def test_bad_input_gets_one_clear_line_and_writes_nothing(tmp_path, capsys, algo, args, message):
    out = tmp_path / "runs"
    assert cli.main(["train", "--algo", algo, *args, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cqsm train: error: ") and message in err, err
    assert "\n" not in err and "Traceback" not in err
    assert not out.exists()


# Machines (CPU model, torch's CPU capability) on which the committed runs below, made before
# provenance named the CPU, do not reproduce bit for bit, at the code that made them either:
# the CPU's vector instructions round floats otherwise somewhere in the simulation or the
# networks, and a run parts ways once learning starts.
ROUNDS_OTHERWISE = {("Intel(R) Xeon(R) Processor", "AVX512")}


@pytest.mark.slow
@pytest.mark.parametrize(
    "run_dir, steps",
    [
        ("ch07_locomotion/td3/td3-Hopper-v5-s0", 5_000),
        ("ch06_deep_cqsm/pendulum/cqsm-Pendulum-v1-s0", 3_000),
        ("control_interval/per-step/sac-Hopper-v5-dt0.016-s0", 7_500),
        ("control_interval/cqsm/cqsm-Hopper-v5-dt0.016-s3", 7_500),  # an Intel AVX-512 CPU
        ("four_tasks/td3/td3-Walker2d-v5-s2", 5_000),  # made on an AMD AVX-512 CPU
    ],
)
def test_committed_rows_reproduce(tmp_path, run_dir, steps):
    """Rerunning committed runs for their first evaluations gives their rows bit for bit, in
    every column but the timing ones: TD3 (Hopper, past its warm-up), CQSM (Pendulum, chapter
    6), SAC at twice Hopper's interval with two updates per step (the control-interval grid)
    and CQSM's default there, and TD3 on Walker2d (made on another CPU than the others).
    Bit for bit only on a machine that rounds as the run's did: a run whose provenance names
    another CPU or other CPU kernels is skipped (two CPUs with the same vector instructions
    can still round otherwise), and so are the three that predate that record on the machines
    of ``ROUNDS_OTHERWISE``."""
    path = results.repository_root() / "paper_figures" / "results" / run_dir
    made = results.read_json(path / "provenance.json")["machine"]
    made_on = made.get("cpu"), made.get("cpu_capability")
    machine = results.provenance()["machine"]
    here = machine["cpu"], machine["cpu_capability"]
    if made_on[1] is not None and made_on != here:
        pytest.skip(f"{run_dir} was made on {made_on}, this machine is {here}")
    if made_on[1] is None and here in ROUNDS_OTHERWISE:
        pytest.skip(f"{run_dir} is known not to reproduce bit for bit on a {machine['cpu']}")
    saved = TrainSettings.from_saved(results.read_json(path / "settings.json"))
    assert saved.learning_starts < steps and steps // saved.eval_every >= 1
    again = results.plain(saved) | {"total_steps": steps, "out": str(tmp_path)}
    rerun = train(TrainSettings.from_saved(again | {"progress": False})).rows
    committed = pd.read_csv(path / "results.csv")
    committed = committed[committed.step <= steps].drop(columns=["sps", "wall_time"])
    # diagnostics added since a run was made are extra columns of the rerun
    pd.testing.assert_frame_equal(
        rerun[committed.columns], committed, check_dtype=False, check_exact=True
    )


def test_a_run_at_another_interval_loads_and_evaluates_there(tmp_path, capsys):
    run = train(tiny(tmp_path, algo="td3", control_interval=0.1, total_steps=200))
    settings, env, _ = load_run(run.run_dir)
    assert settings.control_interval == 0.1 and interval_of(env).repeat == 2
    assert cli.main(["evaluate", str(run.run_dir), "--episodes", "1"]) == 0
    assert "td3 on Pendulum-v1: return" in capsys.readouterr().out


def test_a_run_saved_before_the_interval_setting_resumes_and_migrates(tmp_path):
    whole = train(tiny(tmp_path / "whole", total_steps=400, task_presets=False))
    old = tiny(tmp_path / "old", total_steps=200, task_presets=False)
    train(old)
    # its settings.json and rows as the code before the control interval wrote them
    path = old.run_dir / "settings.json"
    saved = results.read_json(path)
    for key in ("control_interval", "interval", "sources", *migrate.NEW_FIELDS):
        del saved[key]
    saved |= {"action_repeat": 1, "out": str(tmp_path.resolve() / "old")}
    results.write_json(path, saved)
    rows = pd.read_csv(old.run_dir / "results.csv").drop(columns=["sim_time", "eval_return_raw"])
    rows.to_csv(old.run_dir / "results.csv", index=False)
    assert sorted(migrate.migrate_run(old.run_dir, write=False)) == sorted(
        [str(path), str(old.run_dir / "results.csv")]
    )
    resumed = train(tiny(tmp_path / "old", total_steps=400, resume=True, task_presets=False))
    timing = ["sps", "wall_time"]
    pd.testing.assert_frame_equal(
        resumed.rows.drop(columns=timing), whole.rows.drop(columns=timing)
    )
    assert migrate.migrate_run(old.run_dir) == []  # resuming wrote it in the current terms
    with pytest.raises(TypeError, match="action_repeat"):  # the old setting is gone
        TrainSettings(action_repeat=2)
    with pytest.raises(SystemExit):  # and cqsm train refuses --action-repeat (argparse, exit 2)
        cli.main(["train", "--action-repeat", "2"])
