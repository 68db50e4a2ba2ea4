"""The smoothness of a policy's actions: the rate and face statistics against hand computations,
the errors of bad input, and the table of a trained run on the evaluation protocol's episodes."""

import math

import numpy as np
import pandas as pd
import pytest
from test_train import tiny

from cqsm.rl import results, smoothness
from cqsm.rl.smoothness import (
    COLUMNS,
    action_smoothness,
    logged_agreement,
    measured_where,
    price_of_speed,
    run_smoothness,
    smoothness_summary,
    write_smoothness,
)
from cqsm.rl.train import train


def test_a_sine_has_the_mean_squared_rate_of_its_differences():
    omega, dt, per_period = 2 * math.pi, 0.01, 100
    t = dt * np.arange(3 * per_period + 1)  # the 300 differences span three whole periods
    # sin(w t_{k+1}) - sin(w t_k) = 2 sin(w dt / 2) cos(w (t_k + dt / 2))
    exact = 2 * math.sin(omega * dt / 2) ** 2 / dt**2
    one = action_smoothness(np.sin(omega * t)[:, None], dt, -2.0, 2.0)
    assert one["steps"] == len(t)
    assert one["mean_sq_rate"] == pytest.approx(exact, rel=1e-9)
    assert one["mean_sq_rate"] == pytest.approx(omega**2 / 2, rel=1e-3)  # dt -> 0
    assert one["rms_rate"] == pytest.approx(math.sqrt(exact), rel=1e-9)
    assert one["at_face"] == 0.0  # the box is twice the amplitude
    # (sin, cos): every step moves the same Euclidean distance, 2 sin(w dt / 2)
    two = np.stack([np.sin(omega * t[:50]), np.cos(omega * t[:50])], axis=1)
    both = action_smoothness(two, dt, [-2, -2], [2, 2])
    assert both["mean_sq_rate"] == pytest.approx(2 * exact, rel=1e-9)


def test_the_faces_of_the_box_per_step_and_per_coordinate():
    low, high = np.array([-1.0, 0.0]), np.array([1.0, 4.0])  # widths 2 and 4
    pinned = action_smoothness(np.tile(high, (7, 1)), 0.05, low, high)
    assert pinned["mean_sq_rate"] == 0.0 and pinned["rms_rate"] == 0.0
    assert pinned["at_face"] == 1.0 and pinned["at_face_per_coord"].tolist() == [1.0, 1.0]
    a = np.zeros((10, 2)) + [0.0, 2.0]  # the middle of the box
    a[0:3, 0] = 1.0 - 0.0009 * 2  # within 0.1% of the width of the high face
    a[3, 0] = 1.0 - 0.0011 * 2  # just beyond it
    a[2:6, 1] = -0.5  # past the low face counts as at it
    stats = action_smoothness(a, 0.05, low, high)
    assert stats["at_face"] == pytest.approx(0.6)  # steps 0-2 and 2-5
    assert stats["at_face_per_coord"].tolist() == pytest.approx([0.3, 0.4])
    assert stats["at_face_coord_mean"] == pytest.approx(0.35)
    loose = action_smoothness(a, 0.05, low, high, face_tol=0.01)
    assert loose["at_face_per_coord"][0] == pytest.approx(0.4)


def test_one_step_has_no_rate():
    stats = action_smoothness([[0.3]], 0.1, -1, 1)
    assert math.isnan(stats["mean_sq_rate"]) and math.isnan(stats["rms_rate"])
    assert stats["steps"] == 1 and stats["at_face"] == 0.0


@pytest.mark.parametrize(
    ("actions", "dt", "low", "high", "match"),
    [
        (np.zeros(5), 0.1, -1, 1, r"shape \(steps, action dims\).*got shape \(5,\)"),
        (np.zeros((5, 2, 1)), 0.1, -1, 1, "got shape"),
        (np.zeros((0, 2)), 0.1, -1, 1, "at least one"),
        (np.zeros((5, 2)), 0.0, -1, 1, "dt must be a positive number"),
        (np.zeros((5, 2)), -0.1, -1, 1, "dt must be a positive number"),
        (np.zeros((5, 2)), math.nan, -1, 1, "dt must be a positive number"),
        (np.zeros((5, 2)), "0.1", -1, 1, "dt must be a positive number"),
        (np.zeros((5, 2)), 0.1, [-1, -1, -1], 1, r"low must have one bound.*\(2,\)"),
        (np.zeros((5, 2)), 0.1, -1, [1], r"high must have one bound"),
        (np.zeros((5, 2)), 0.1, [1, -1], [1, 1], "high must exceed low"),
        (np.full((5, 2), np.nan), 0.1, -1, 1, "actions must be finite"),
    ],
)
def test_bad_input_is_refused_naming_what_is_wrong(actions, dt, low, high, match):
    with pytest.raises(ValueError, match=match):
        action_smoothness(actions, dt, low, high)


def test_a_trained_run_is_measured_on_the_protocols_episodes(tmp_path, monkeypatch):
    settings = tiny(
        tmp_path / "runs",
        total_steps=300,
        learning_starts=100,
        eval_every=300,
        checkpoint_every=300,
        agent={"hidden": (16, 16)},
    )
    run = train(settings).run_dir
    out = tmp_path / "smoothness.csv"
    table = write_smoothness(out, [run], n_episodes=2, progress=False)
    assert list(table.columns) == list(COLUMNS) and table["episode"].tolist() == [0, 1]
    assert (table["steps"] == 200).all() and (table["dt"] == table["native_dt"]).all()
    assert (table["rms_rate"] ** 2).to_numpy() == pytest.approx(table["mean_sq_rate"].to_numpy())
    assert ((0 <= table["at_face"]) & (table["at_face"] <= 1)).all()
    # the same episodes as the run's last evaluation: their mean is its eval_return
    last = pd.read_csv(run / "results.csv").iloc[-1]
    assert table["eval_return"].mean() == pytest.approx(last["eval_return"], rel=1e-9)
    assert (table["policy_step"] == 300).all() and table["algo"].eq("cqsm").all()
    saved = pd.read_csv(out)
    assert saved["eval_return"].tolist() == pytest.approx(table["eval_return"].tolist())
    assert (tmp_path / "smoothness.provenance.json").exists()

    # resumable: a run already in the table is not measured again
    def never(*args, **kwargs):
        raise AssertionError("measured again")

    monkeypatch.setattr(smoothness, "run_smoothness", never)
    assert write_smoothness(out, [run], progress=False).equals(pd.read_csv(out))

    unfinished = tmp_path / "runs" / "cqsm-Pendulum-v1-s9"
    unfinished.mkdir()
    results.write_json(unfinished / "settings.json", {"seed": 9})
    with pytest.raises(results.RunError, match="No policy.pt.*cqsm-Pendulum-v1-s9"):
        write_smoothness(out, [run, unfinished], progress=False)
    with pytest.raises(results.RunError, match="has no policy.pt"):
        run_smoothness(unfinished)


def test_each_sitting_records_its_own_runs_and_machine(tmp_path, monkeypatch):
    made = {}
    for seed in (0, 1, 2):
        run = tmp_path / "runs" / f"td3-Hopper-v5-dt0.002-s{seed}"
        run.mkdir(parents=True)
        (run / "policy.pt").write_bytes(b"")
        made[seed] = run
    one = _table([("td3", 0, 0.002, 1, [1.0], [1.0], [0.0])]).iloc[0].to_dict()

    def fake(run_dir, n_episodes=1, face_tol=smoothness.FACE_TOL):
        return [one | {"seed": int(run_dir.name[-1]), "run": results.portable(run_dir)}]

    monkeypatch.setattr(smoothness, "run_smoothness", fake)
    out = tmp_path / "smoothness.csv"
    write_smoothness(out, [made[0], made[1]], progress=False)
    cpu = {"now": "first machine"}
    real = results.provenance

    def elsewhere(**extra):
        found = real(**extra)
        found["machine"]["cpu"] = cpu["now"]
        return found

    monkeypatch.setattr(results, "provenance", elsewhere)
    write_smoothness(out, [made[0], made[1], made[2]], progress=False)  # seed 2 only is new
    where = measured_where(out).set_index("run")
    assert where["measurement"].tolist() == [0, 0, 1]
    assert where["cpu"].iloc[2] == "first machine" and where["cpu"].iloc[0] != "first machine"
    assert set(where.index) == set(pd.read_csv(out)["run"])
    # measuring again from scratch leaves one sitting, with every run
    cpu["now"] = "second machine"
    write_smoothness(out, list(made.values()), redo=True, progress=False)
    where = measured_where(out)
    assert where["measurement"].eq(0).all() and where["cpu"].eq("second machine").all()
    assert len(where) == 3
    results.write_json(out.with_suffix(".provenance.json"), {"commit": "x"})
    with pytest.raises(results.RunError, match="not a smoothness provenance"):
        write_smoothness(out, list(made.values()), progress=False)


def test_a_sitting_says_where_it_measured_before_it_writes_the_table(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "td3-Hopper-v5-dt0.002-s0"
    run.mkdir(parents=True)
    (run / "policy.pt").write_bytes(b"")
    one = _table([("td3", 0, 0.002, 1, [1.0], [1.0], [0.0])]).iloc[0].to_dict()
    monkeypatch.setattr(smoothness, "run_smoothness", lambda run_dir, *args: [one | {"run": "r"}])
    out, seen, real = tmp_path / "smoothness.csv", [], results.provenance

    def watched(**extra):  # the table's own writes would make a repository look dirty
        seen.append(out.exists())
        return real(**extra)

    monkeypatch.setattr(results, "provenance", watched)
    write_smoothness(out, [run], progress=False)
    assert seen == [False]  # read once, before the first write
    (entry,) = results.read_json(out.with_suffix(".provenance.json"))["measurements"]
    assert entry["runs"] == [results.portable(run)] and entry["n_episodes"] == 1


def _table(runs):
    """A smoothness table of made-up runs: (algo, seed, dt, policy_step, returns, rms, faces)."""
    rows = []
    for algo, seed, dt, step, returns, rms, faces in runs:
        for episode, (ret, r, f) in enumerate(zip(returns, rms, faces, strict=True)):
            rows.append(
                dict.fromkeys(COLUMNS, 0)
                | {
                    "algo": algo,
                    "env": "Hopper-v5",
                    "seed": seed,
                    "dt": dt,
                    "native_dt": 0.008,
                    "episode": episode,
                    "rms_rate": r,
                    "at_face": f,
                    "at_face_coord_mean": f / 2,
                    "at_face_per_coord": f"{f} 0 0",
                    "eval_return": ret,
                    "policy_step": step,
                    "run": f"runs/{algo}-Hopper-v5-dt{dt}-s{seed}",
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def test_the_summary_averages_every_episode_of_every_run_per_cell():
    table = _table(
        [
            ("td3", 0, 0.002, 200_000, [1.0, 3.0], [10.0, 20.0], [0.0, 1.0]),
            ("td3", 1, 0.002, 200_000, [5.0, 7.0], [30.0, 40.0], [0.5, 0.5]),
            ("td3", 0, 0.008, 100_000, [2.0, 2.0], [1.0, 1.0], [0.2, 0.2]),
        ]
    )
    summary = smoothness_summary(table)
    assert summary.index.names == ["algo", "env", "dt"]
    fine = summary.loc[("td3", "Hopper-v5", 0.002)]
    assert fine["runs"] == 2 and fine["episodes"] == 4
    assert fine["rms_rate"] == pytest.approx(25.0) and fine["eval_return"] == pytest.approx(4.0)
    assert fine["at_face"] == pytest.approx(0.5) and fine["at_face_coord_mean"] == 0.25
    assert fine["trained"] == 50_000  # 200k steps of 2 ms: 50k native steps' worth
    assert fine["coordinates"] == 3
    assert summary.loc[("td3", "Hopper-v5", 0.008), "trained"] == 100_000


def test_measured_episodes_are_checked_against_the_runs_log(tmp_path):
    table = _table(
        [
            ("td3", 0, 0.008, 300, [1.0, 3.0, 100.0], [1.0] * 3, [0.0] * 3),
            ("sac", 0, 0.008, 300, [4.0, 4.0, 4.0], [1.0] * 3, [0.0] * 3),
            ("sac", 1, 0.008, 300, [4.0], [1.0], [0.0]),  # fewer episodes than n_eval
        ]
    )
    for run, logged in zip(table["run"].unique(), [2.0, 5.0, 4.0], strict=True):
        (tmp_path / run).mkdir(parents=True)
        results.write_json(tmp_path / run / "settings.json", {"n_eval": 2})
        steps = pd.DataFrame({"step": [100, 300], "eval_return": [-9.0, logged]})
        steps.to_csv(tmp_path / run / "results.csv", index=False)
    checked = logged_agreement(table, root=tmp_path).set_index(["algo", "seed"])
    assert checked.loc[("td3", 0), "measured"] == 2.0  # the first n_eval episodes only
    assert checked.loc[("td3", 0), "difference"] == 0.0
    assert checked.loc[("sac", 0), "difference"] == pytest.approx(-0.2)
    assert np.isnan(checked.loc[("sac", 1), "measured"])
    assert (checked["commit"] == "").all()  # no provenance.json
    made = {"git": {"commit": "abc"}, "machine": {"platform": "Linux-x"}}
    results.write_json(tmp_path / table["run"].iloc[0] / "provenance.json", made)
    checked = logged_agreement(table, root=tmp_path).set_index(["algo", "seed"])
    assert checked.loc[("td3", 0), ["commit", "platform"]].tolist() == ["abc", "Linux-x"]


def test_the_price_of_speed_against_a_hand_computation(tmp_path):
    rows = []
    for arm, lam, msr in (("exact", 1e-6, 1000.0), ("priced", 0.01, 400.0)):
        run = tmp_path / arm / "cqsm-HalfCheetah-v5-s0"
        run.mkdir(parents=True)
        results.write_json(run / "settings.json", {"agent": {"lam": lam}})
        for episode, ret in ((0, 2000.0), (1, 1000.0)):
            rows.append(
                {"env": "HalfCheetah-v5", "run": str(run), "episode": episode, "steps": 1001}
                | {"dt": 0.05, "native_dt": 0.05, "mean_sq_rate": msr, "eval_return": ret}
            )
    cost = price_of_speed(pd.DataFrame(rows), "exact").set_index("arm")
    # 50 s episodes: penalty 0.01/2 * 400 * 50 = 100 each, reward (2000 + 1000) * 0.05
    assert cost.loc["priced", "penalty_per_second"] == pytest.approx(2.0)
    assert cost.loc["priced", "share"] == pytest.approx(200 / 150)
    assert cost.loc["priced", "rate_vs_reference"] == pytest.approx(0.4)
    assert cost.loc["exact", "rate_vs_reference"] == 1.0
    assert math.isnan(price_of_speed(pd.DataFrame(rows), "none")["rate_vs_reference"][0])
