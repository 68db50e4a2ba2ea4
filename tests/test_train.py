"""The training harness: determinism, resume, divergence guard, run folders, CLI, smoke runs."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from cqsm import cli
from cqsm.rl import migrate, results
from cqsm.rl.agents import CQSMAgent, CQSMSettings
from cqsm.rl.agents.cqsm import ACTOR_FORMS
from cqsm.rl.envs import ActionDiffusionWrapper
from cqsm.rl.replay import ReplayBuffer
from cqsm.rl.runs import load_run
from cqsm.rl.train import TrainingDiverged, TrainSettings, make_env, train
from cqsm.settings import SettingsError

# Timing columns differ between runs; every other column must agree exactly.
TIMING = ["sps", "wall_time"]


def tiny(tmp_path, env="Pendulum-v1", **overrides) -> TrainSettings:
    """A few hundred steps with small networks: every part of the loop, in seconds."""
    settings = dict(
        total_steps=600,
        learning_starts=150,
        eval_every=200,
        n_eval=2,
        checkpoint_every=200,
        batch_size=32,
        out=str(tmp_path),
        progress=False,
        agent={"hidden": (32, 32)},
    )
    return TrainSettings.for_task(env, **(settings | overrides))


def rows_without_timing(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=TIMING).reset_index(drop=True)


def test_same_seed_same_numbers(tmp_path):
    first = train(tiny(tmp_path / "a"))
    second = train(tiny(tmp_path / "b"))
    pd.testing.assert_frame_equal(rows_without_timing(first.rows), rows_without_timing(second.rows))
    other = train(tiny(tmp_path / "c", seed=1))
    assert not np.allclose(other.rows["eval_return"], first.rows["eval_return"])


def test_rows_and_files(tmp_path):
    result = train(tiny(tmp_path))
    rows = result.rows
    assert list(rows.columns[: len(results.ROW_KEYS)]) == list(results.ROW_KEYS)
    assert list(rows["step"]) == [200, 400, 600]
    assert rows["critic_loss"].notna().all()  # updates began at step 150
    for name in ("settings.json", "results.csv", "provenance.json", "checkpoint.pt", "policy.pt"):
        assert (result.run_dir / name).exists(), name
    saved = pd.read_csv(result.run_dir / "results.csv")
    pd.testing.assert_frame_equal(saved, rows, check_dtype=False)
    provenance = results.read_json(result.run_dir / "provenance.json")
    assert provenance["packages"]["torch"] and provenance["steps"] == 600
    assert len(provenance["git"]["commit"] or "x" * 40) == 40


def test_resume_after_interruption_gives_the_same_rows(tmp_path, monkeypatch):
    whole = train(tiny(tmp_path / "whole"))
    original = CQSMAgent.update
    calls = {"n": 0}

    def interrupted(self, batch):
        calls["n"] += 1
        if calls["n"] == 380:  # step 530: after the checkpoint at step 400, mid-episode
            raise KeyboardInterrupt
        return original(self, batch)

    monkeypatch.setattr(CQSMAgent, "update", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(tiny(tmp_path / "cut"))
    monkeypatch.setattr(CQSMAgent, "update", original)
    cut_dir = tiny(tmp_path / "cut").run_dir
    assert results.load_checkpoint(cut_dir / "checkpoint.pt")["step"] == 400
    assert list(pd.read_csv(cut_dir / "results.csv")["step"]) == [200, 400]
    resumed = train(tiny(tmp_path / "cut", resume=True)).rows
    pd.testing.assert_frame_equal(rows_without_timing(resumed), rows_without_timing(whole.rows))


def test_a_finished_run_is_extended_exactly(tmp_path):
    whole = train(tiny(tmp_path / "whole", total_steps=800))
    train(tiny(tmp_path / "short", total_steps=400))  # ends between episodes
    longer = train(tiny(tmp_path / "short", total_steps=800, resume=True))
    pd.testing.assert_frame_equal(rows_without_timing(longer.rows), rows_without_timing(whole.rows))


def test_divergence_guard_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = CQSMAgent.update

    def poisoned(self, batch):
        info = original(self, batch)
        if self.updates >= 300:  # step 450, after the checkpoint at step 400
            with torch.no_grad():
                self.critic.q1[0].weight.fill_(math.nan)
            info = original(self, batch)
        return info

    monkeypatch.setattr(CQSMAgent, "update", poisoned)
    settings = tiny(tmp_path)
    with pytest.raises(TrainingDiverged, match=r"step 450: non-finite critic_loss.*step 400"):
        train(settings)
    state = results.load_checkpoint(settings.run_dir / "checkpoint.pt")
    assert state["step"] == 400
    assert all(torch.isfinite(v).all() for v in state["agent"]["critic"].values())


def test_exploding_critic_is_caught(tmp_path):
    with pytest.raises(TrainingDiverged, match="beyond max_abs_q"):
        train(tiny(tmp_path, max_abs_q=1e-9))


def test_run_folder_is_protected(tmp_path):
    # on the library's defaults: a run saved before a setting existed had its default
    train(tiny(tmp_path, task_presets=False, total_steps=200))
    with pytest.raises(results.RunError, match="already holds a run"):
        train(tiny(tmp_path, task_presets=False, total_steps=200))
    with pytest.raises(results.RunError, match="different settings.*batch_size"):
        train(tiny(tmp_path, task_presets=False, total_steps=200, batch_size=64, resume=True))
    # a run saved before a setting existed resumes while the setting keeps its default
    saved_path = tiny(tmp_path, task_presets=False).run_dir / "settings.json"
    saved = results.read_json(saved_path)
    del saved["agent"]["target_noise"], saved["max_abs_q"]
    results.write_json(saved_path, saved)
    train(tiny(tmp_path, task_presets=False, total_steps=400, resume=True))
    with pytest.raises(results.RunError, match="different settings.*target_noise"):
        agent = {"hidden": (32, 32), "target_noise": 0.1}
        train(tiny(tmp_path, task_presets=False, total_steps=600, resume=True, agent=agent))
    # a setting since removed reads as before at the value where it did nothing, and a run
    # made with another value is refused, whatever the rows say
    saved = results.read_json(saved_path)
    results.write_json(saved_path, saved | {"agent": saved["agent"] | {"q_unit": 1.0}})
    assert migrate.migrate_settings(results.read_json(saved_path)) == saved
    results.write_json(saved_path, saved | {"agent": saved["agent"] | {"q_unit": 0.05}})
    with pytest.raises(migrate.RemovedSetting, match="q_unit = 0.05, a setting since removed"):
        train(tiny(tmp_path, task_presets=False, total_steps=600, resume=True))
    with pytest.raises(migrate.RemovedSetting):
        load_run(tiny(tmp_path, task_presets=False).run_dir)
    results.write_json(saved_path, saved)
    checkpoint = tiny(tmp_path, task_presets=False).run_dir / "checkpoint.pt"
    checkpoint.write_bytes(b"not a checkpoint")
    with pytest.raises(results.RunError, match="corrupt"):
        train(tiny(tmp_path, task_presets=False, total_steps=400, resume=True))


def test_a_run_saved_before_the_exact_relaxation_reads_as_it_was_made():
    def saved(**agent):
        record = TrainSettings.for_task(
            "HalfCheetah-v5", task_presets=False, agent={"boundary": "project"} | agent
        ).record()
        del record["agent"]["relaxation_step"], record["warmup_hold"]
        return migrate.migrate_settings(record)

    relaxed, plain = saved(relaxation=0.05), saved()
    assert relaxed["agent"]["relaxation_step"] == "euler" and relaxed["warmup_hold"] is None
    assert plain["agent"]["relaxation_step"] == "exact" == CQSMSettings().relaxation_step
    assert TrainSettings.from_saved(relaxed).agent.relaxation_step == "euler"


def test_settings_errors():
    with pytest.raises(SettingsError, match="lam must be a positive"):
        CQSMSettings(lam=0.0)
    with pytest.raises(SettingsError, match="Unknown actor form"):
        CQSMSettings(actor="pg")
    with pytest.raises(SettingsError, match="Unknown algorithm"):
        TrainSettings(algo="ppo")
    with pytest.raises(SettingsError, match="total_steps must be a positive"):
        TrainSettings(total_steps=0)


@pytest.mark.parametrize("actor", ACTOR_FORMS)
def test_every_actor_form_updates(tmp_path, actor):
    result = train(tiny(tmp_path, total_steps=300, agent={"hidden": (32, 32), "actor": actor}))
    assert np.isfinite(result.rows["score_loss"].iloc[-1])


def test_cli_train_then_evaluate(tmp_path, capsys):
    args = ["train", "--env", "Pendulum-v1", "--total-steps", "200", "--learning-starts", "100"]
    args += ["--eval-every", "100", "--n-eval", "1", "--hidden", "16", "16", "--lam", "0.02"]
    args += ["--out", str(tmp_path), "--no-progress"]
    assert cli.main(args) == 0
    run_dir = tmp_path / "cqsm-Pendulum-v1-s0"
    settings = results.read_json(run_dir / "settings.json")
    assert settings["agent"]["lam"] == 0.02 and settings["agent"]["hidden"] == [16, 16]
    assert settings["learning_starts"] == 100 and settings["eval_every"] == 100
    assert cli.main(["evaluate", str(run_dir), "--episodes", "2"]) == 0
    assert "return" in capsys.readouterr().out
    # an error speaks to the user: one line, exit status 1
    assert cli.main(args + ["--lam", "-1"]) == 1  # the last value given wins
    assert "lam must be a positive" in capsys.readouterr().err


def test_saved_policy_acts_like_the_trained_one(tmp_path):
    result = train(tiny(tmp_path, total_steps=300))
    _, env, agent = load_run(result.run_dir)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(agent.act(obs), result.agent.act(obs))
    assert env.explore is False


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"])
def test_smoke_mujoco(tmp_path, env_id):
    settings = tiny(
        tmp_path, env_id, total_steps=300, learning_starts=100, eval_every=300, n_eval=1
    )
    result = train(settings)
    assert np.isfinite(result.rows[["eval_return", "critic_loss", "score_loss"]].to_numpy()).all()
    assert make_env(settings, explore=False).observation_space.shape[0] > 10


def test_record_writes_an_animated_gif(tmp_path):
    from PIL import Image

    from cqsm.rl.evaluation import record

    frames = [np.full((8, 8, 3), 40 * i, dtype=np.uint8) for i in range(5)]
    path = record(frames, tmp_path / "policy.gif", fps=20)
    with Image.open(path) as gif:
        assert gif.n_frames == 5
    with pytest.raises(ValueError, match="render_mode"):
        record([None, None], tmp_path / "empty.gif", fps=20)


def test_terminated_stops_bootstrapping_truncated_does_not():
    settings = TrainSettings.for_task("Pendulum-v1", task_presets=False)
    env = make_env(settings, explore=True)
    agent = CQSMAgent(settings.agent, env)
    obs = torch.randn(4, 4)
    batch = {
        "obs": obs,
        "next_obs": torch.randn(4, 4),
        "action": torch.zeros(4, 1),
        "reward": torch.tensor([-1.0, -2.0, -1.0, -2.0]),
        "terminated": torch.tensor([1.0, 1.0, 0.0, 0.0]),
    }
    target = agent.td_target(batch)
    torch.testing.assert_close(target[:2], batch["reward"][:2] * env.base_dt)
    # a truncated (not terminated) transition bootstraps: its target is the reward plus the
    # discounted future, with the rate penalty of the next move charged inside it
    with torch.no_grad():
        torch.manual_seed(0)
        psi = agent.score(batch["next_obs"][2:])
        a_next = agent.diffusion.move(batch["next_obs"][2:, 3:], psi, torch.randn(2, 1))
        q = torch.min(*agent.critic_target(batch["next_obs"][2:, :3], a_next))
        future = q - 0.5 * settings.agent.lam * psi.square().sum(-1) * env.dt
    torch.manual_seed(0)
    target = agent.td_target(dict(batch, **{k: v[2:] for k, v in batch.items()}))
    torch.testing.assert_close(target, batch["reward"][2:] * env.base_dt + agent.discount * future)
    assert agent.discount == pytest.approx(0.99)  # beta = -ln(0.99) / dt by default


def test_every_setting_is_documented():
    from cqsm.settings import settings_table

    for cls in (TrainSettings, CQSMSettings):
        table = settings_table(cls)
        assert (table["meaning"].str.len() > 10).all(), table[table["meaning"].str.len() <= 10]


def relaxing(relaxation, step, control_interval=None, **agent):
    """A CQSM agent on HalfCheetah-v5 with a relaxation score (no noise), and its env."""
    settings = TrainSettings.for_task(
        "HalfCheetah-v5",
        task_presets=False,
        control_interval=control_interval,
        agent={"relaxation": relaxation, "relaxation_step": step, "boundary": "project"}
        | {"sigma_a": 0.0}
        | agent,
    )
    env = make_env(settings, explore=True)
    return CQSMAgent(settings.agent, env), env


def test_relaxation_score_moves_the_action_toward_a_target_in_the_box():
    agent, env = relaxing(0.05, "euler")
    assert env.rate_scale == pytest.approx(2 / 0.05)  # the box's width per relaxation time
    obs = torch.as_tensor(
        np.random.default_rng(0).uniform(-1, 1, (64, agent.n + 6)), dtype=torch.float32
    )
    target = torch.tanh(agent.score_net(obs))  # in the box [-1, 1]
    moved = agent.diffusion.mean_move(obs[:, agent.n :], agent.score(obs))
    # the Euler step with relaxation time = control interval: one move reaches the target
    torch.testing.assert_close(moved, target, atol=1e-5, rtol=0)
    # the exact step goes a fraction 1 - e^{-1} of the way
    agent, env = relaxing(0.05, "exact")
    a, target = obs[:, agent.n :], torch.tanh(agent.score_net(obs))
    moved = agent.diffusion.mean_move(a, agent.score(obs))
    torch.testing.assert_close(moved, target + (a - target) * math.exp(-1), atol=1e-5, rtol=0)
    # a score that sees the state alone: its target is a policy of x, whatever a_prev was
    agent, _ = relaxing(0.05, "euler", score_sees_action=False)
    other = obs.clone()
    other[:, agent.n :] = -obs[:, agent.n :]
    for seen in (obs, other):
        moved = agent.diffusion.mean_move(seen[:, agent.n :], agent.score(seen))
        torch.testing.assert_close(moved, torch.tanh(agent.score_net(obs[:, : agent.n])))
    with pytest.raises(SettingsError, match="relaxation score"):
        CQSMSettings(relaxation=0.05, boundary="squash")
    with pytest.raises(SettingsError, match="relaxation must be a positive"):
        CQSMSettings(relaxation=0.0)


def test_the_exact_relaxation_never_overshoots_and_is_the_same_at_every_interval():
    target = np.linspace(-0.9, 0.9, 6)

    def path(dt, step, seconds=0.2):
        """The applied actions, every 0.05 s, of a relaxation time of 0.03 s toward target."""
        agent, env = relaxing(0.03, step, control_interval=dt)
        obs, _ = env.reset(seed=0)
        unit = torch.as_tensor(np.arctanh(target), dtype=torch.float32)
        agent.score_net = lambda seen, unit=unit: unit.expand(seen.shape[0], -1)
        out = []
        for k in range(round(seconds / dt)):
            obs, *_ = env.step(agent.act(obs, explore=False))
            if round((k + 1) * dt / 0.05, 6).is_integer():
                out.append(obs[agent.n :].copy())
        return np.array(out)

    exact = {dt: path(dt, "exact") for dt in (0.01, 0.05, 0.1)}
    times = np.arange(1, 5) * 0.05
    expected = target * (1 - np.exp(-times / 0.03))[:, None]  # from a = 0, the box centre
    np.testing.assert_allclose(exact[0.01], expected, atol=1e-5)
    np.testing.assert_allclose(exact[0.05], expected, atol=1e-5)
    np.testing.assert_allclose(exact[0.1], expected[1::2], atol=1e-5)
    # the Euler step at 0.05 s > 0.03 s goes past the target (or to the face beyond it)
    euler = path(0.05, "euler")
    np.testing.assert_allclose(euler[0], np.clip(target * 0.05 / 0.03, -1, 1), atol=1e-5)
    assert (np.abs(euler[0]) > np.abs(target)).all()
    with pytest.raises(SettingsError, match="Unknown relaxation step"):
        CQSMSettings(relaxation=0.05, relaxation_step="rk4")


def test_warmup_draws_are_held_in_physical_time(tmp_path):
    from cqsm.rl.rollout import Rollout
    from cqsm.rl.train import Warmup, make_agent

    def warmup_actions(algo, hold, dt=0.01, steps=60, **agent):
        s = TrainSettings.for_task(
            "HalfCheetah-v5",
            algo=algo,
            task_presets=False,
            control_interval=dt,
            warmup_hold=hold,
            agent=agent or None,
        )
        env = make_env(s, explore=True)
        agent = make_agent(s, env)
        env.action_space.seed(0)
        rollout, warmup, applied = Rollout(env, seed=0), Warmup(agent, env, s.warmup_hold_steps), []
        for _ in range(steps):
            move = rollout.step(lambda obs: warmup(obs, rollout.episode_step))
            applied.append(move.info.get("applied_action", move.action))
        return s, np.array(applied)

    s, td3 = warmup_actions("td3", 0.05)
    assert s.warmup_hold_steps == 5
    blocks = td3.reshape(12, 5, 6)
    assert (blocks == blocks[:, :1]).all() and len(np.unique(blocks[:, 0, 0])) == 12
    # no hold: a fresh draw every step, the same first draws as a hold of one step
    _, fresh = warmup_actions("td3", None, steps=12)
    _, one = warmup_actions("td3", 0.01, steps=12)
    np.testing.assert_array_equal(fresh, one)
    assert len(np.unique(fresh[:, 0])) == 12
    np.testing.assert_array_equal(fresh[0], td3[0])
    # CQSM's 'action' warm-up applies the held draw; 'target' relaxes toward it (0.02 s)
    agent = {"boundary": "project", "sigma_a": 0.0, "relaxation": 0.02}
    _, jump = warmup_actions("cqsm", 0.05, warmup="action", **agent)
    _, relax = warmup_actions("cqsm", 0.05, warmup="target", **agent)
    jumps = jump.reshape(12, 5, 6)
    assert (np.abs(jumps - jumps[:, :1]) < 1e-6).all()
    np.testing.assert_allclose(
        relax[:5], jump[0] * (1 - np.exp(-np.arange(1, 6) * 0.5))[:, None], atol=1e-5
    )
    assert TrainSettings(warmup_hold=0.001, env="HalfCheetah-v5").warmup_hold_steps == 1
    with pytest.raises(SettingsError, match="warmup_hold must be a positive"):
        TrainSettings(warmup_hold=0.0)
    with pytest.raises(SettingsError, match="give a relaxation"):
        CQSMSettings(warmup="target")


def test_target_score_and_target_noise(tmp_path):
    # the target score lags the score by Polyak averaging, is saved, and a run that uses it
    # resumes exactly
    settings = tiny(tmp_path / "whole", agent={"hidden": (32, 32), "target_score": True})
    whole = train(settings)
    agent = load_run(whole.run_dir, whole=True)[2]
    assert "score_target" in agent.state_dict()
    lagged = [
        (t - p).abs().max().item()
        for t, p in zip(agent.score_target.parameters(), agent.score_net.parameters(), strict=True)
    ]
    assert max(lagged) > 0
    train(tiny(tmp_path / "short", total_steps=400, agent=settings.agent.__dict__))
    longer = train(tiny(tmp_path / "short", resume=True, agent=settings.agent.__dict__))
    pd.testing.assert_frame_equal(rows_without_timing(longer.rows), rows_without_timing(whole.rows))
    # target noise: the next action stays in the box, and its spread grows with the setting
    spreads = []
    for noise in (0.0, 0.3):
        s = TrainSettings.for_task(
            "HalfCheetah-v5",
            task_presets=False,
            agent={"boundary": "project", "target_noise": noise, "sigma_a": 0.0},
        )
        agent = CQSMAgent(s.agent, make_env(s, explore=True))
        next_obs = torch.zeros(4000, agent.n + 6)
        captured = []
        agent.critic_target = lambda x, a, keep=captured: (keep.append(a), (a[:, 0], a[:, 0]))[1]
        batch = {"next_obs": next_obs, "reward": torch.zeros(4000), "terminated": torch.zeros(4000)}
        agent.td_target(batch)
        a_next = captured[0]
        assert a_next.abs().max() <= 1.0
        spreads.append(a_next.std(0).mean().item())
    assert spreads[0] == pytest.approx(0.0, abs=1e-6)  # sigma_a = 0: no noise at all
    assert spreads[1] == pytest.approx(0.3, rel=0.1)  # clipped at 2.5 sd: about 0.3
    with pytest.raises(SettingsError, match="target_noise"):
        CQSMSettings(target_noise=-0.1)


def test_action_warmup_draws_the_applied_action_uniformly_in_the_box():
    agent_settings = {"relaxation": 0.05, "boundary": "project", "sigma_a": 0.0}
    spread = {}
    for warmup in ("score", "action"):
        s = TrainSettings.for_task(
            "HalfCheetah-v5", task_presets=False, agent=agent_settings | {"warmup": warmup}
        )
        env = make_env(s, explore=True)
        agent = CQSMAgent(s.agent, env)
        obs, _ = env.reset(seed=0)
        env.action_space.seed(0)
        applied = []
        for _ in range(3000):
            obs, *_ = env.step(agent.warmup_action(obs, env.action_space.sample()))
            applied.append(obs[agent.n :])
        applied = np.array(applied)
        spread[warmup] = (np.abs(applied) > 0.999).mean()
        if warmup == "action":  # uniform on [-1, 1]^6: mean 0, variance 1/3, no mass at a face
            assert np.abs(applied.mean(0)).max() < 0.05
            np.testing.assert_allclose(applied.var(0), 1 / 3, rtol=0.1)
    assert spread["action"] < 0.01 < 0.3 < spread["score"]  # random drifts pile up at the faces
    with pytest.raises(SettingsError, match="warm-up"):
        CQSMSettings(warmup="gaussian")
    with pytest.raises(SettingsError, match="squash"):
        CQSMSettings(warmup="action", boundary="squash")
    # a slow score (ten box widths per second) keeps its bound; the warm-up still jumps
    slow = TrainSettings.for_task(
        "HalfCheetah-v5", task_presets=False, agent={"warmup": "action", "sigma_a": 0.0}
    )
    env = make_env(slow, explore=True)
    agent = CQSMAgent(slow.agent, env)
    assert agent.rate_scale == pytest.approx(20.0) and env.rate_scale == pytest.approx(40.0)
    assert agent.score(torch.full((1, agent.n + 6), 50.0)).abs().max() <= 20.0
    obs, _ = env.reset(seed=0)
    draw = env.action_space.sample()
    obs, *_ = env.step(agent.warmup_action(obs, draw))
    np.testing.assert_allclose(obs[agent.n :], draw / 40.0, atol=1e-5)
    manual = ActionDiffusionWrapper(make_env(slow, explore=True).env, sigma_a=0.0)
    with pytest.raises(SettingsError, match="at least 40"):
        CQSMAgent(slow.agent, manual)


def test_replayed_spans_follow_an_episode_and_stop_where_it_does():
    buffer = ReplayBuffer(obs_dim=1, action_dim=1, capacity=8, seed=3)
    # Episode one: obs 0 -> 1 -> 2 -> 3 (terminates); episode two: 10 -> 11 -> 12 (newest).
    for obs, next_obs, terminated in [(0, 1, 0), (1, 2, 0), (2, 3, 1), (10, 11, 0), (11, 12, 0)]:
        buffer.add([obs], [obs / 10], obs + 0.5, [next_obs], bool(terminated))
    twin = ReplayBuffer(obs_dim=1, action_dim=1, capacity=8, seed=3)
    twin.load_state_dict(buffer.state_dict())
    spans = buffer.sample(64, steps=3)
    plain = twin.sample(64)  # the same draws: the first transition of each span
    for name in ReplayBuffer.FIELDS:
        torch.testing.assert_close(spans[name], plain[name])
    expected = {  # first obs: (span, rewards, last next obs, terminated)
        0.0: (3, [0.5, 1.5, 2.5], 3.0, 1.0),
        1.0: (2, [1.5, 2.5, 0.0], 3.0, 1.0),  # stops at the termination
        2.0: (1, [2.5, 0.0, 0.0], 3.0, 1.0),
        10.0: (2, [10.5, 11.5, 0.0], 12.0, 0.0),  # the newest transition ends it
        11.0: (1, [11.5, 0.0, 0.0], 12.0, 0.0),
    }
    seen = set()
    for k, first in enumerate(spans["obs"][:, 0].tolist()):
        span, rewards, last, terminated = expected[first]
        seen.add(first)
        assert spans["span"][k].item() == span
        assert spans["span_reward"][k].tolist() == rewards
        assert spans["span_next_obs"][k, 0].item() == last
        assert spans["span_terminated"][k].item() == terminated
        states = [first + j if j < span else 0.0 for j in (1, 2)]
        torch.testing.assert_close(spans["span_obs"][k, :, 0], torch.tensor(states))
    assert seen == set(expected)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        buffer.sample(4, steps=0)


def test_a_bootstrap_span_trains_deterministically_and_changes_the_training(tmp_path):
    def run(name, **agent):
        settings = tiny(tmp_path / name, algo="cqsm", agent={"hidden": (32, 32)} | agent)
        return rows_without_timing(train(settings).rows)

    first, again = run("a", bootstrap_span=0.15), run("b", bootstrap_span=0.15)
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["critic_loss"], run("c")["critic_loss"])  # one step
