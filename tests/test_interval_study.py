import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from cqsm.rl import results
from cqsm.rl.interval_study import (
    _SCREEN,
    GRID,
    PROBES,
    SIGNALS,
    budget_seconds,
    every_step_runs,
    grid_returns,
    grid_settings,
    interval_table,
    late_training,
    native_dt,
    per_step_runs,
    probe_runs,
    screen,
    screen_choice,
    screen_knobs,
    time_aware,
    time_aware_runs,
)
from cqsm.rl.migrate import migrate_settings
from cqsm.rl.presets import PHYSICAL, physical
from cqsm.rl.train import TrainSettings

COMMITTED = "paper_figures/results/control_interval/per-step"


def test_the_committed_grid_runs_are_the_librarys_cells():
    from cqsm.rl.interval_study import cqsm_runs, native_runs

    root = results.repository_root()
    study = root / "paper_figures/results/control_interval"
    checked = 0
    planned = per_step_runs(out=str(root / COMMITTED))
    planned += cqsm_runs(out=str(study / "cqsm")) + native_runs(out=str(study / "native"))
    planned += time_aware_runs(out=str(study / "time-aware"))
    planned += time_aware_runs(out=str(study / "time-aware-sac"), algo="sac")
    planned += every_step_runs(out=str(study / "every-step"))
    planned += every_step_runs(out=str(study / "cqsm-every-step"), algo="cqsm")
    for probe in PROBES:
        planned += probe_runs(probe, seeds=(0, 1, 2), out=str(study / probe))
    for settings in planned:
        saved = settings.run_dir / "settings.json"
        if not saved.exists():
            continue
        free = {"out", "sources", "resume", "progress"}
        changed = results.changed_settings(
            migrate_settings(results.read_json(saved)), settings, free
        )
        assert not changed, (settings.run_dir, changed)
        checked += 1
    assert checked >= 20


def test_the_committed_screen_runs_are_the_librarys_arms():
    root = results.repository_root() / "paper_figures/results/control_interval/screen"
    checked = 0
    for env in GRID:
        for arm in screen(env):
            settings = arm.settings(env, 0, 50_000, str(root))
            saved = settings.run_dir / "settings.json"
            if saved.exists():
                free = {"out", "sources", "resume", "progress"}
                saved = migrate_settings(results.read_json(saved))
                changed = results.changed_settings(saved, settings, free)
                assert not changed, (settings.run_dir, changed)
                checked += 1
    assert checked >= 7


def test_the_grid_budget_is_fixed_in_simulated_seconds():
    assert budget_seconds("HalfCheetah-v5") == pytest.approx(2500.0)
    assert budget_seconds("Hopper-v5") == pytest.approx(400.0)
    for env, intervals in GRID.items():
        assert any(math.isclose(dt, native_dt(env)) for dt in intervals)
        for dt in intervals:
            s = grid_settings(env, "td3", dt, 0, "runs")
            assert s.sim_seconds == pytest.approx(budget_seconds(env))
            updates = s.total_steps * s.updates_per_second * dt
            assert updates == pytest.approx(50_000)  # one per native step, at every interval
    runs = per_step_runs(seeds=(0,))
    assert len(runs) == 12 and {r.algo for r in runs} == {"td3", "sac"}
    assert [r.control_interval for r in runs[:4]] == [0.01, 0.01, 0.1, 0.1]  # extremes first


def test_physical_settings_come_from_the_native_interval_alone():
    for env in GRID:
        T = native_dt(env)
        agent, loop = physical(env, lag_price=0.1, relaxation_intervals=2.5)
        assert agent["relaxation"] == pytest.approx(2.5 * T)
        assert agent["relaxation_step"] == "exact"
        assert agent["sigma_a"] * math.sqrt(T) == pytest.approx(0.1)
        assert agent["lam"] == pytest.approx(0.1 * (2.5 * T) ** 2)
        assert loop["warmup_hold"] == T
        assert loop["learning_starts_seconds"] == pytest.approx(10 * 1000 * T)  # time limits
        # the same settings in seconds at every interval: only the step counts follow dt
        cells = [grid_settings(env, "cqsm", dt, 0, "runs", agent, **loop) for dt in GRID[env]]
        assert all(c.agent == cells[0].agent for c in cells)
        for c in cells:
            assert c.learning_starts * c.control_interval == pytest.approx(10_000 * T)
            assert c.warmup_hold_steps == max(1, round(T / c.control_interval))
    assert physical("Hopper-v5")[0]["lam"] == 1e-6  # no price: chapter 8's recipe's lam
    names = [v.name for v in screen("HalfCheetah-v5")]
    assert len(names) == len(set(names)) == 6 and names[0] == "exact"
    assert [v.name for v in screen("Hopper-v5")] == names


def _rows(algo, env, dt, seed, returns):
    """Evaluation rows every EVAL_STEPS native steps' worth of simulated time."""
    T = native_dt(env)
    times = np.arange(1, len(returns) + 1) * 5_000 * T
    return pd.DataFrame(
        {
            "algo": algo,
            "env": env,
            "seed": seed,
            "step": np.round(times / dt).astype(int),
            "sim_time": times,
            "eval_return": returns,
        }
    )


def test_returns_at_the_budget_and_their_ratio_to_the_native_interval():
    env = "Hopper-v5"
    native = {0: 1000.0, 1: 1200.0, 2: 800.0}  # at 50k steps; their runs go on to 100k
    fine = {0: 500.0, 1: 700.0, 2: 600.0}
    native_rows = pd.concat(
        [
            _rows("td3", env, 0.008, s, [0, 10, 0, 20, 0, 0, 0, 0, 0, r] + [9999] * 10)
            for s, r in native.items()
        ]
    )
    off = [_rows("td3", env, 0.002, s, [1, 2, 3, 4, 5, 6, 7, 8, 9, r]) for s, r in fine.items()]
    short = _rows("td3", env, 0.016, 0, [1, 2, 3])  # a run short of the budget is left out
    cells = grid_returns(pd.concat([*off, short]), native_rows)
    assert len(cells) == 6 and set(cells["dt"]) == {0.002, 0.008}
    assert cells.loc[cells["native"], "return"].tolist() == [1000.0, 1200.0, 800.0]
    assert cells.loc[cells["native"], "return_10k"].tolist() == [10.0] * 3
    assert cells.loc[cells["native"], "return_20k"].tolist() == [20.0] * 3
    # the mean over the last fifth of the budget: its last two of ten evaluations
    assert cells.loc[cells["native"], "return_late"].tolist() == [
        (0 + r) / 2 for r in native.values()
    ]
    assert cells.loc[~cells["native"], "return_late"].tolist() == [
        (9 + r) / 2 for r in fine.values()
    ]
    assert (cells["method"] == "TD3").all()
    table = interval_table(cells).set_index("dt")
    assert table.loc[0.008, "ratio"] == pytest.approx(1.0)
    assert table.loc[0.002, "ratio"] == pytest.approx(600.0 / 1000.0)
    assert table.loc[0.002, "std"] == pytest.approx(100.0)
    assert table.loc[0.002, "ratio_low"] < 0.6 < table.loc[0.002, "ratio_high"]
    assert table.loc[0.002, "ratio_high"] < 0.9  # bounded by the seeds' extremes
    assert table.loc[0.002, "ratio_low"] > 500 / 1200 - 1e-9


def test_time_aware_td3_is_td3_at_the_native_interval_and_physical_elsewhere():
    from cqsm.rl.agents.td3 import TD3Agent
    from cqsm.rl.train import make_env

    for env, intervals in GRID.items():
        T = native_dt(env)
        td3 = TrainSettings.for_task(env, algo="td3")
        agent, loop = time_aware(env, T)
        native = grid_settings(env, "td3", T, 0, "runs", agent, **loop)
        assert native.agent.gamma == pytest.approx(0.99) and native.warmup_hold_steps == 1
        assert native.learning_starts == td3.learning_starts
        for dt in intervals:
            agent, loop = time_aware(env, dt)
            cell = grid_settings(env, "td3", dt, 0, "runs", agent, **loop)
            horizon = -dt / math.log(cell.agent.gamma)  # seconds: the same at every interval
            assert horizon == pytest.approx(-T / math.log(0.99))
            assert cell.learning_starts * dt == pytest.approx(td3.learning_starts * T)
    assert [r.control_interval for r in time_aware_runs((0,))[:2]] == [0.01, 0.1]
    every = every_step_runs((0,))
    assert [(r.control_interval, r.total_steps, r.updates_per_second) for r in every] == [
        (0.01, 250_000, 100.0),
        (0.002, 200_000, 500.0),
    ]
    # the exploration noise is held for 0.05 s, across calls, and resumes exactly
    agent, loop = time_aware("HalfCheetah-v5", 0.01)
    s = grid_settings("HalfCheetah-v5", "td3", 0.01, 0, "runs", agent, **loop)
    td3 = TD3Agent(s.agent, make_env(s, explore=True))
    assert td3.noise.steps == 5
    torch.manual_seed(0)
    noise = [td3.noise.draw(torch.zeros(6)).clone() for _ in range(7)]
    assert all(torch.equal(n, noise[0]) for n in noise[:5]) and not torch.equal(noise[5], noise[0])
    saved = td3.state_dict()
    again = TD3Agent(s.agent, make_env(s, explore=True))
    again.load_state_dict(saved)
    assert again.noise.left == 3 and torch.equal(again.noise.draw(torch.zeros(6)), noise[6])
    # a hold of one step draws what the per-step noise draws
    fresh = [
        TD3Agent(s.agent.__class__(expl_noise_hold=h), make_env(s, explore=True))
        for h in (None, 0.01)
    ]
    draws = []
    for agent in fresh:
        torch.manual_seed(1)
        draws.append(torch.stack([agent.noise.draw(torch.zeros(6)) for _ in range(3)]))
    assert torch.equal(*draws)


def test_time_aware_sac_holds_its_policy_noise_and_is_sac_at_one_step():
    from cqsm.rl.agents.sac import SACAgent
    from cqsm.rl.train import make_env

    env, dt, T = "HalfCheetah-v5", 0.01, 0.05
    sac = TrainSettings.for_task(env, algo="sac")
    for cell in time_aware_runs((0,), out="runs", algo="sac"):
        horizon = -cell.control_interval / math.log(cell.agent.gamma)
        assert horizon == pytest.approx(-native_dt(cell.env) / math.log(0.99))
        assert cell.agent.noise_hold == native_dt(cell.env) == cell.warmup_hold
        native = TrainSettings.for_task(cell.env, algo="sac").learning_starts
        assert cell.learning_starts * cell.control_interval == pytest.approx(
            native * native_dt(cell.env)
        )
    with pytest.raises(ValueError, match="No time-aware rule for 'cqsm'"):
        time_aware(env, dt, "cqsm")
    agent, loop = time_aware(env, dt, "sac")
    s = grid_settings(env, "sac", dt, 0, "runs", agent, **loop)
    assert s.agent.gamma == pytest.approx(0.99 ** (dt / T)) and s.learning_starts == 5 * (
        sac.learning_starts
    )
    held = SACAgent(s.agent, make_env(s, explore=True))
    obs = np.zeros(17, dtype=np.float32)
    torch.manual_seed(0)
    acted = [held.act(obs) for _ in range(6)]  # one observation: the action moves with the draw
    assert all(np.array_equal(a, acted[0]) for a in acted[:5])
    assert not np.array_equal(acted[5], acted[0])
    assert not np.array_equal(held.act(obs, explore=False), acted[0])  # the mean action
    again = SACAgent(s.agent, make_env(s, explore=True))
    again.load_state_dict(held.state_dict())
    assert again.noise.left == held.noise.left == 4  # the sixth draw is held for 4 more
    # a hold of one control step acts as SAC with a fresh draw every step
    fresh = [
        SACAgent(replace(s.agent, noise_hold=h), make_env(s, explore=True)) for h in (None, dt)
    ]
    for agent in fresh[1:]:
        agent.load_policy_state_dict(fresh[0].policy_state_dict())
    actions = []
    for agent in fresh:
        torch.manual_seed(1)
        actions.append(np.stack([agent.act(obs + k) for k in range(3)]))
    assert np.array_equal(*actions)


def test_cqsm_train_defaults_to_one_setting_in_physical_units_on_any_env():
    from cqsm.rl.envs import EnvError
    from cqsm.rl.presets import PHYSICAL, default, half_width

    for env in ("Pendulum-v1", "InvertedPendulum-v5", *GRID, "Walker2d-v5", "Ant-v5"):
        T, h = native_dt(env), half_width(env)
        made = TrainSettings.for_task(env)
        tau = PHYSICAL["relaxation_intervals"] * T
        assert made.agent.relaxation == pytest.approx(tau)
        assert made.agent.relaxation_step == "exact"
        assert made.agent.sigma_a * math.sqrt(T) == pytest.approx(0.1 * h)
        assert made.agent.lam == pytest.approx(PHYSICAL["lag_price"] * tau**2 / h**2, rel=1e-5)
        assert made.sources["agent.lam"] == "physical"
        # the same agent, warm-up time and hold at any control interval: all set from T
        for dt in GRID.get(env, (2 * T,)):  # frame skips, or whole repeats
            other = TrainSettings.for_task(env, control_interval=dt)
            assert other.agent == made.agent
            assert other.learning_starts * dt == pytest.approx(made.learning_starts * T)
            assert other.warmup_hold == made.warmup_hold == T
        # the user's settings win, and task_presets=False is the library's defaults
        assert TrainSettings.for_task(env, agent={"lam": 0.3}).agent.lam == 0.3
        assert TrainSettings.for_task(env, task_presets=False).agent.relaxation is None
    assert default("Hopper-v5", "td3") == ({}, {})  # CQSM's alone
    assert default("cqsm/LinearQuadratic-v0", "cqsm") == ({}, {})  # the problem's own row
    with pytest.raises(EnvError, match="one-dimensional Box"):
        TrainSettings.for_task("CartPole-v1")


def test_the_default_is_the_screens_choice_on_the_committed_runs():
    """PHYSICAL is what the screen's stated rule picks from the committed runs: the priced arm
    (action rate at most 0.9 of the unpriced arm's on both tasks) with the highest mean share
    of TD3's return at 50k steps."""
    from cqsm.rl.compare import returns_at
    from cqsm.rl.presets import PHYSICAL
    from cqsm.rl.smoothness import price_of_speed
    from cqsm.rl.study import read_study

    root = results.repository_root() / "paper_figures/results"
    folder = root / "control_interval/screen"
    arms = screen("Hopper-v5")
    screened = read_study(folder, arms)
    assert {(v.name, env) for v in arms for env in GRID} <= set(
        zip(screened.variant, screened.env, strict=True)
    ), "every arm has run on both tasks"
    td3 = results.read_runs(root / "ch07_locomotion", algo="td3", env=list(GRID))
    at = returns_at(pd.concat([screened.assign(algo=screened.variant), td3]), [50_000])
    cost = price_of_speed(pd.read_csv(folder / "smoothness.csv"), reference="exact")
    choice = screen_choice(at, cost, [v.name for v in arms])
    assert set(choice.index) == {v.name for v in arms}, "every arm's policy is measured"
    assert choice["priced"].iloc[0]
    assert screen_knobs(choice.index[0]) == PHYSICAL


def test_each_method_of_the_grid_has_its_folder_name_and_native_cell(tmp_path):
    from cqsm.rl.interval_study import METHODS, cell_settings, read_grid

    env, dt = "Hopper-v5", 0.004
    built = {m: cell_settings(m, env, dt, 0, str(tmp_path / METHODS[m][0])) for m in METHODS}
    assert built["time-aware"].agent.gamma == pytest.approx(0.99**0.5)
    assert built["time-aware-sac"].agent.gamma == pytest.approx(0.99**0.5)
    assert built["time-aware-sac"].agent.noise_hold == 0.008
    assert built["every-step"].updates_per_second == pytest.approx(1 / dt)
    assert built["cqsm-every-step"].updates_per_second == pytest.approx(1 / dt)
    assert built["cqsm-every-step"].agent == TrainSettings.for_task(env).agent
    assert [r.algo for r in every_step_runs((0,), algo="cqsm")] == ["cqsm", "cqsm"]
    assert built["td3"].updates_per_second == pytest.approx(1 / 0.008)
    assert built["cqsm"].agent == TrainSettings.for_task(env).agent  # the default, unchanged
    assert built["span"].agent == replace(built["cqsm"].agent, bootstrap_span=0.008)
    assert built["target-rate"].agent == replace(built["cqsm"].agent, tau_interval=0.008)
    smoothed = replace(built["cqsm"].agent, target_noise_interval=0.008)
    assert built["smoothing"].agent == smoothed
    for probe in PROBES:  # the intervals below the native
        probed = [(r.env, r.control_interval) for r in probe_runs(probe)]
        assert probed == [(e, dt) for e, dts in GRID.items() for dt in dts if dt < native_dt(e)]
    with pytest.raises(ValueError, match="Unknown probe 'td3'"):
        probe_runs("td3")
    short = cell_settings("time-aware", env, dt, 0, "runs", learning_starts=100)
    assert short.learning_starts == 100  # a budget in steps replaces the method's in seconds
    with pytest.raises(ValueError, match="Unknown method 'ddpg'"):
        cell_settings("ddpg", env, dt, 0, "runs")
    # rows written as each method's runs come back under the method's name, and the TD3
    # methods get TD3's native cell
    native = tmp_path / "ch07"
    for method, folder in [("td3", "per-step"), ("time-aware", "time-aware"), ("cqsm", "cqsm")]:
        algo = "cqsm" if method == "cqsm" else "td3"
        _rows(algo, env, dt, 0, [1.0] * 10).to_csv(_run(tmp_path / folder, algo), index=False)
    _rows("td3", env, 0.008, 0, [2.0] * 20).to_csv(_run(native / "td3", "td3"), index=False)
    rows, native_rows = read_grid(tmp_path, native, [env], algos=("td3",))
    assert set(rows.variant) == {"TD3", "TD3, time-aware", "CQSM"}
    assert set(native_rows.variant) == {"TD3", "TD3, time-aware"}
    cells = grid_returns(rows, native_rows)
    assert set(cells[cells.native].method) == {"TD3", "TD3, time-aware"}
    # CQSM's native cell: its own folder's runs, and the chosen screen arm's for other seeds
    chosen = next(n for n, _, _ in _SCREEN if screen_knobs(n) == PHYSICAL)
    screened = f"screen/{chosen}"
    _rows("cqsm", env, dt, 0, [6.0] * 10).to_csv(_run(tmp_path / "span", "cqsm"), index=False)
    for seed, folder, value in [(0, "native", 3.0), (0, screened, 4.0), (1, screened, 5.0)]:
        rows = _rows("cqsm", env, 0.008, seed, [value] * 10)
        rows.to_csv(_run(tmp_path / folder, "cqsm", seed), index=False)
    _, native_rows = read_grid(tmp_path, native, [env], algos=("td3",))
    mine = native_rows[native_rows.variant == "CQSM"].groupby("seed").eval_return.mean()
    assert mine.to_dict() == {0: 3.0, 1: 5.0}  # seed 0 from native/, seed 1 from the screen
    spanned = native_rows[native_rows.variant == "CQSM, span T"]  # CQSM's native cell
    assert spanned.groupby("seed").eval_return.mean().to_dict() == {0: 3.0, 1: 5.0}


def _run(folder, algo, seed=0):
    path = folder / f"{algo}-Hopper-v5-s{seed}"
    path.mkdir(parents=True, exist_ok=True)
    return path / "results.csv"


def test_late_training_means_the_logged_signals_over_the_end_of_the_budget():
    env = "Hopper-v5"  # budget 400 s; evaluations every 40 s
    runs = []
    for seed, scale in ((0, 1.0), (1, 3.0)):
        rows = _rows("cqsm", env, 0.002, seed, list(range(10)))
        for k, name in enumerate(SIGNALS):
            rows[name] = scale * (k + 1) * np.arange(1, 11)  # 1..10 times (k + 1)
        runs.append(rows)
    short = _rows("cqsm", env, 0.016, 0, [1, 2, 3]).assign(**dict.fromkeys(SIGNALS, 1.0))
    td3 = _rows("td3", env, 0.002, 0, list(range(10))).assign(**dict.fromkeys(SIGNALS, 9.0))
    table = late_training(pd.concat([*runs, short, td3]), last=0.2)
    assert len(table) == 1  # the run short of the budget and TD3's are left out
    row = table.iloc[0]
    assert row["seeds"] == 2 and not row["native"] and row["dt"] == 0.002
    assert row["method"] == "CQSM"
    for k, name in enumerate(SIGNALS):  # the last 20%: the rows at 360 s and 400 s
        assert row[name] == pytest.approx((1.0 + 3.0) / 2 * (k + 1) * 9.5)
    spanned = runs[0].assign(variant="CQSM, span T")  # another method: a row of its own
    both = late_training(pd.concat([*runs, spanned]))
    assert both.method.tolist() == ["CQSM", "CQSM, span T"]
    assert both.seeds.tolist() == [2, 1]
    with pytest.raises(ValueError, match=r"last must be a fraction of the budget in \(0, 1\]"):
        late_training(pd.concat(runs), last=0)


def test_a_probe_is_set_beside_the_default_on_its_own_seeds():
    from cqsm.rl.interval_study import probe_table

    def cell(method, dt, seed, value):
        native = math.isclose(dt, 0.008)
        return {
            "env": "Hopper-v5",
            "method": method,
            "dt": dt,
            "native": native,
            "seed": seed,
            "return": value,
            "return_late": value / 2,  # the mean over the budget's last fifth
        }

    rows = [
        cell("CQSM", 0.008, 0, 400.0),
        cell("CQSM", 0.008, 1, 600.0),
        cell("CQSM", 0.002, 0, 200.0),
        cell("CQSM", 0.002, 1, 300.0),
        cell("CQSM, τ per T", 0.002, 0, 450.0),
        cell("CQSM, τ per T", 0.008, 0, 999.0),  # at the native interval: not a probe's cell
        cell("CQSM, span T", 0.004, 1, 100.0),  # the default has no seed 1 there
    ]
    late = pd.DataFrame(
        [
            {"method": "CQSM", "env": "Hopper-v5", "dt": 0.002, "grad_a_q": 0.01, "q": 0.2},
            {
                "method": "CQSM, τ per T",
                "env": "Hopper-v5",
                "dt": 0.002,
                "grad_a_q": 0.03,
                "q": 0.5,
            },
        ]
    )
    table = probe_table(pd.DataFrame(rows), late).set_index(["probe", "dt"])
    assert len(table) == 2
    rate = table.loc[("CQSM, τ per T", 0.002)]
    assert (rate.seeds, rate["return"], rate.default) == (1, 450.0, 200.0)  # seed 0's default
    assert (rate.share, rate.default_share) == (pytest.approx(0.9), pytest.approx(0.4))
    assert (rate.late, rate.default_late) == (225.0, 100.0)
    assert (rate.late_share, rate.default_late_share) == (pytest.approx(0.9), pytest.approx(0.4))
    assert (rate.grad_a_q, rate.default_grad_a_q, rate.q, rate.default_q) == (0.03, 0.01, 0.5, 0.2)
    span = table.loc[("CQSM, span T", 0.004)]
    assert np.isnan(span.default) and np.isnan(span.grad_a_q) and span["return"] == 100.0
    assert np.isnan(span.default_late) and span.late == 50.0


def test_shares_beside_sets_a_method_against_its_reference_off_the_native_interval():
    from cqsm.rl.interval_study import shares_beside

    rows = []
    for method, native, fine, coarse in (
        ("TD3", 1000.0, 400.0, 900.0),
        ("TD3, time-aware", 1000.0, 800.0, None),  # no coarse cell yet
    ):
        for dt, value in ((0.008, native), (0.002, fine), (0.016, coarse)):
            if value is not None:
                rows.append({"env": "Hopper-v5", "method": method, "dt": dt, "seeds": 3})
                rows[-1] |= {"ratio": value / native, "ratio_low": 0.0, "ratio_high": 2.0}
    table = pd.DataFrame(rows)
    both = shares_beside(table, "TD3, time-aware", "TD3")
    assert both[["dt", "ratio", "reference_ratio"]].values.tolist() == [[0.002, 0.8, 0.4]]
    assert both.gain.tolist() == [pytest.approx(0.4)] and both.reference_seeds.tolist() == [3]
    assert shares_beside(table, "SAC, time-aware", "SAC").empty


def test_compounded_noise_of_the_default_by_hand():
    from cqsm.rl.interval_study import compounded_noise

    noise = compounded_noise("HalfCheetah-v5").set_index("dt")  # tau = T = 0.05 s, h = 1
    fine = noise.loc[0.01]
    assert fine.smoothing == pytest.approx(0.2)
    assert fine.compounded == pytest.approx(0.2 / math.sqrt(1 - math.exp(-0.4)))
    assert fine.action_noise == pytest.approx(0.1 * math.sqrt(0.01 / 0.05))
    assert fine.action_compounded == pytest.approx(
        fine.action_noise / math.sqrt(1 - math.exp(-0.4))
    )
    native = 0.2 / math.sqrt(1 - math.exp(-2.0))
    assert noise.probe_compounded.tolist() == pytest.approx([native] * 4)  # T's at every dt
    assert noise.loc[0.05, "probe"] == pytest.approx(0.2)
    assert (noise.compounded.diff().dropna() < 0).all()  # more smoothing the finer the interval


def test_by_method_names_each_run_by_the_folder_it_lies_in():
    from cqsm.rl.interval_study import by_method

    runs = [
        ("td3", "results/control_interval/per-step/td3-Hopper-v5-dt0.002-s0"),
        ("sac", "results/control_interval/per-step/sac-Hopper-v5-dt0.002-s0"),
        ("td3", "results/control_interval/time-aware/td3-Hopper-v5-dt0.002-s0"),
        ("sac", "results/control_interval/time-aware-sac/sac-Hopper-v5-dt0.002-s0"),
        ("td3", "results/control_interval/every-step/td3-Hopper-v5-dt0.002-s0"),
        ("cqsm", "results/control_interval/smoothing/cqsm-Hopper-v5-dt0.002-s0"),
        ("td3", "results/ch07_locomotion/td3/td3-Hopper-v5-s0"),
        ("cqsm", "results/control_interval/native/cqsm-Hopper-v5-s0"),
    ]
    table = pd.DataFrame(runs, columns=["algo", "run"]).assign(x=range(len(runs)))
    named = by_method(table)
    assert named["algo"].tolist() == [
        "TD3",
        "SAC",
        "TD3, time-aware",
        "SAC, time-aware",
        "TD3, an update per step",
        "CQSM, smoothing as at T",
        "TD3",
        "CQSM",
    ]
    assert named["x"].tolist() == table["x"].tolist() and table["algo"].iloc[0] == "td3"


def test_progress_counts_each_methods_planned_runs_off_native_and_those_beyond_the_plan():
    from cqsm.rl.interval_study import beside_runs, cqsm_runs, per_step_runs, progress

    plan = per_step_runs((0, 1), "g/per-step") + cqsm_runs((0,), "g/cqsm")
    plan += beside_runs((0,), "g")
    cells = pd.DataFrame(
        [  # method, env, dt, seed, native
            ("TD3", "Hopper-v5", 0.002, 0, False),
            ("TD3", "Hopper-v5", 0.002, 1, False),
            ("TD3", "Hopper-v5", 0.008, 0, True),  # native: not counted
            ("SAC, time-aware", "HalfCheetah-v5", 0.1, 0, False),
            ("CQSM, span T", "Hopper-v5", 0.002, 1, False),  # a further seed of a probe
        ],
        columns=["method", "env", "dt", "seed", "native"],
    )
    table = progress(cells, plan)
    assert table.loc["TD3"].tolist() == [12, 2, 0]  # 6 cells off native per seed, 2 seeds
    assert table.loc["SAC"].tolist() == [12, 0, 0]
    assert table.loc["CQSM"].tolist() == [6, 0, 0]
    assert table.loc["SAC, time-aware"].tolist() == [6, 1, 0]
    assert table.loc["TD3, an update per step", "planned"] == 2  # the finest interval only
    assert table.loc["CQSM, span T"].tolist() == [4, 0, 1]  # finer than native, seed 0
    assert list(table.columns) == ["planned", "at budget", "beyond plan"]
    nothing = progress(pd.DataFrame(), plan)  # no run has reached the budget
    assert nothing["at budget"].eq(0).all() and nothing.loc["TD3", "planned"] == 12


def test_straddles_reads_an_interval_against_the_band():
    from cqsm.rl.interval_study import straddles

    assert straddles(0.5, 0.95) and straddles(1.05, 2.0) and straddles(0.5, 2.0)
    assert not straddles(0.92, 1.08)  # wholly inside: met
    assert not straddles(0.2, 0.8) and not straddles(1.2, 3.0)  # wholly outside: missed
    assert straddles(0.5, 0.9) and not straddles(0.5, 0.9, band=0.05)  # the band's edge


def test_further_runs_extend_the_open_cells_and_their_native_cell_from_seeds_0_to_2():
    from cqsm.rl.interval_study import BUDGET_STEPS, cell_settings, further_runs

    def cell(env, dt, seed, value, method="CQSM"):
        native = math.isclose(dt, native_dt(env))
        return {"env": env, "method": method, "dt": dt, "seed": seed, "native": native,
                "return": value}  # fmt: skip

    rows = [cell("Hopper-v5", 0.008, s, v) for s, v in enumerate((100.0, 110.0, 90.0))]
    rows += [cell("Hopper-v5", 0.002, s, v) for s, v in enumerate((40.0, 100.0, 130.0))]
    rows += [cell("Hopper-v5", 0.016, s, v) for s, v in enumerate((20.0, 22.0, 21.0))]
    rows += [cell("Hopper-v5", 0.016, 3, 100.0)]  # a further seed: not read for the plan
    rows += [cell("Hopper-v5", 0.002, s, 5.0, "TD3") for s in range(3)]  # not CQSM's
    runs = further_runs(pd.DataFrame(rows), "g")
    assert [(r.env, r.control_interval, r.seed, r.out) for r in runs] == [
        ("Hopper-v5", 0.002, 3, "g/cqsm"),  # straddles: 0.4 to 1.3 of native
        ("Hopper-v5", 0.008, 3, "g/native"),
        ("Hopper-v5", 0.002, 4, "g/cqsm"),
        ("Hopper-v5", 0.008, 4, "g/native"),
    ]  # 0.016 s: about 0.2 of native, wholly outside the band; HalfCheetah: no cell
    assert runs[0] == cell_settings("cqsm", "Hopper-v5", 0.002, 3, "g/cqsm")
    assert runs[1].total_steps == 2 * BUDGET_STEPS
    assert further_runs(pd.DataFrame(), "g") == []
