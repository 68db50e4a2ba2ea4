"""The throughput benchmark: interleaved plan, resumable files, summary, CLI (no timing tested)."""

import pandas as pd
import pytest

from cqsm import cli
from cqsm.rl import bench as bench_module
from cqsm.rl import results
from cqsm.rl.bench import BenchSettings, bench, markdown, summarise
from cqsm.settings import SettingsError


def small(tmp_path, **overrides):
    settings = dict(
        algos=("cqsm", "td3", "sac", "diffusion_ql", "qsm"),
        envs=("Pendulum-v1",),
        repeats=2,
        steps=3,
        fill=64,
        calls=3,
        batch_size=32,
        out=str(tmp_path / "bench"),
        progress=False,
    )
    return BenchSettings(**(settings | overrides))


def test_every_pair_measured_each_repeat_in_rotated_order(tmp_path):
    summary = bench(small(tmp_path))
    rows = pd.read_csv(tmp_path / "bench" / "results.csv")
    assert len(rows) == 10 and (rows["sps"] > 0).all() and (rows["latency_ms"] > 0).all()
    first, second = (list(rows[rows["repeat"] == r]["algo"]) for r in (0, 1))
    assert sorted(first) == sorted(second) and first != second  # interleaved, not repeated
    assert second == first[1:] + first[:1]
    assert list(summary["repeats"]) == [2] * 5
    for name in ("settings.json", "summary.csv", "provenance.json"):
        assert (tmp_path / "bench" / name).exists()
    read, where = bench_module.read_bench(tmp_path / "bench")  # what the chapters read
    pd.testing.assert_frame_equal(read, pd.read_csv(tmp_path / "bench" / "summary.csv"))
    assert len(read) == len(summary) and where.startswith("bench: measured at commit ")
    with pytest.raises(results.RunError, match="holds no benchmark run"):
        bench_module.read_bench(tmp_path / "nothing")
    # one machine, or two: the chapters compare two benchmark runs only on one
    other = tmp_path / "other"
    other.mkdir()
    made = results.read_json(tmp_path / "bench" / "provenance.json")
    results.write_json(other / "provenance.json", made)
    assert bench_module.same_machine(tmp_path / "bench", other)
    made["machine"]["cpu_capability"] = "another"
    results.write_json(other / "provenance.json", made)
    assert not bench_module.same_machine(tmp_path / "bench", other)
    del made["machine"]["cpu"]  # made before the CPU was recorded
    results.write_json(other / "provenance.json", made)
    assert not bench_module.same_machine(other, other)


def test_an_interrupted_bench_resumes_without_measuring_again(tmp_path, monkeypatch):
    calls, original = [], bench_module.measure

    def flaky(algo, env_id, settings, seed=0):
        calls.append(algo)
        if len(calls) == 4 and flaky.interrupt:
            raise KeyboardInterrupt
        return original(algo, env_id, settings, seed)

    flaky.interrupt = True
    monkeypatch.setattr(bench_module, "measure", flaky)
    with pytest.raises(KeyboardInterrupt):
        bench(small(tmp_path))
    assert len(pd.read_csv(tmp_path / "bench" / "results.csv")) == 3
    calls.clear()
    flaky.interrupt = False
    bench(small(tmp_path))
    assert len(calls) == 7 and len(pd.read_csv(tmp_path / "bench" / "results.csv")) == 10
    with pytest.raises(results.RunError, match="other settings"):
        bench(small(tmp_path, steps=4))
    calls.clear()
    bench(small(tmp_path, steps=4, fresh=True))  # measures all again, with the new settings
    assert len(calls) == 10 and len(pd.read_csv(tmp_path / "bench" / "results.csv")) == 10


def test_summary_ratios_and_table():
    rows = pd.DataFrame(
        {
            "repeat": [0, 0, 1, 1],
            "algo": ["cqsm", "sac", "cqsm", "sac"],
            "env": ["E"] * 4,
            "sps": [60.0, 30.0, 40.0, 20.0],
            "latency_ms": [0.1, 0.2, 0.3, 0.4],
            "batch_size": [100, 256, 100, 256],
        }
    )
    summary = summarise(rows).set_index("algo")
    assert summary.loc["cqsm", "sps"] == 50 and summary.loc["sac", "sps"] == 25
    assert summary.loc["sac", "cqsm_speedup"] == 2.0 and summary.loc["sac", "sps_min"] == 20
    table = markdown(summarise(rows))
    assert "| E | sac | 256 | 25.0 (20.0–30.0) | 0.30 (0.20–0.40) | 2.00 |" in table


def test_bad_settings_and_the_cli(tmp_path, capsys):
    with pytest.raises(SettingsError, match="Unknown algorithms"):
        BenchSettings(algos=("cqsm", "ddpg"))
    with pytest.raises(SettingsError, match="fill"):
        BenchSettings(fill=10)
    with pytest.raises(SettingsError, match="fill"):
        BenchSettings(fill=200, batch_size=256)
    code = cli.main(
        ["bench", "--algos", "cqsm", "td3", "--envs", "Pendulum-v1", "--repeats", "1"]
        + ["--steps", "2", "--fill", "300", "--calls", "2", "--out", str(tmp_path), "--no-progress"]
    )
    assert code == 0
    assert "| Pendulum-v1 | td3 |" in capsys.readouterr().out


def test_each_algorithm_is_measured_at_its_own_training_batch_size():
    """Steps per second of training as each one trains: TD3 and CQSM on HalfCheetah update on
    batches of 100 (their task settings), SAC on 256; batch_size= measures all at one size."""
    own = BenchSettings(envs=("HalfCheetah-v5",), fill=256, steps=2, calls=1)
    assert {a: own.batch(a, "HalfCheetah-v5") for a in ("cqsm", "td3", "sac")} == {
        "cqsm": 100,
        "td3": 100,
        "sac": 256,
    }
    assert bench_module.measure("td3", "HalfCheetah-v5", own)["batch_size"] == 100
    matched = BenchSettings(envs=("HalfCheetah-v5",), fill=256, batch_size=256)
    assert matched.batch("td3", "HalfCheetah-v5") == 256


def test_both_runs_and_speedups_read_two_benchmark_summaries_side_by_side():
    import pandas as pd

    from cqsm.rl.bench import both_runs, speedups

    first = pd.DataFrame(
        {
            "env": ["h", "h", "h"],
            "algo": ["cqsm", "qsm", "td3"],
            "batch_size": [100, 256, 256],
            "sps": [100.0, 25.0, 80.0],
            "cqsm_speedup": [1.0, 4.0, 1.25],
        }
    )
    second = first.assign(batch_size=256, sps=[90.0, 30.0, 80.0], cqsm_speedup=[1, 3, 1.125])
    both = both_runs(first, second)  # cqsm's batch differs: not the same configuration
    assert both.algo.tolist() == ["qsm", "td3"]
    assert both.difference.tolist() == pytest.approx([0.2, 0.0])
    ratios = speedups({"training batch": first, "batch 256": second}, over="qsm")
    assert list(ratios.columns) == ["training batch", "batch 256"]
    assert ratios.loc["h"].tolist() == [4.0, 3.0]


def test_relative_speed_is_each_algorithms_speed_over_the_reference_per_task():
    from cqsm.rl.bench import relative_speed

    summary = pd.DataFrame(
        {
            "env": ["h", "h", "h", "w", "w", "w"],
            "algo": ["cqsm", "qsm", "td3"] * 2,
            "sps": [100.0, 25.0, 80.0, 50.0, 10.0, 40.0],
        }
    )
    share = relative_speed(summary, to="td3")
    assert share.loc["h"].to_dict() == pytest.approx({"cqsm": 1.25, "qsm": 0.3125, "td3": 1})
    assert share.loc["w", "qsm"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="no 'sac' rows"):
        relative_speed(summary, to="sac")
