import pandas as pd

from cqsm.rl import four_tasks, results
from cqsm.rl.four_tasks import ALGOS, SEEDS, STEPS, TASKS, coverage, planned_runs, reused
from cqsm.rl.migrate import migrate_settings
from cqsm.rl.train import TrainSettings

FREE = {"out", "sources", "resume", "progress"}


def test_planned_runs_come_in_rounds_and_skip_the_reused_cells(tmp_path):
    runs = planned_runs(root=tmp_path)
    cells = [(r.algo, r.env, r.seed) for r in runs]
    assert len(cells) == len(set(cells))
    every = {(a, e, s) for a in ALGOS for e in TASKS for s in SEEDS}
    skipped = every - set(cells)
    # chapter 7's baselines (seeds 0-2) and extra TD3 seeds, CQSM's native runs (0-4)
    assert skipped == (
        {(a, e, s) for a in ALGOS for e in TASKS[:2] for s in (0, 1, 2)}
        | {(a, e, s) for a in ("td3", "cqsm") for e in TASKS[:2] for s in (3, 4)}
    )
    assert all(reused(a, e, s, tmp_path) is not None for a, e, s in skipped)
    seeds = [s for _, _, s in cells]
    assert seeds == sorted(seeds)  # every cell of seeds 0-2 before any of 3-4
    first = [c for c in cells if c[2] == 0]
    assert first[:5] == [(a, "Walker2d-v5", 0) for a in ALGOS]
    assert all(r.total_steps == STEPS for r in runs)
    assert {r.out for r in runs} == {str(tmp_path / "four_tasks" / a) for a in ALGOS}
    again = planned_runs(seeds=(4, 0), root=tmp_path)  # rounds, whatever order is given
    assert [r.seed for r in again] == sorted(r.seed for r in again)


def test_cell_settings_go_to_the_reused_folder_or_the_comparisons(tmp_path):
    native = four_tasks.cell_settings("cqsm", "Hopper-v5", 1, tmp_path)
    assert native.out == str(tmp_path / "control_interval" / "native")
    assert native == TrainSettings.for_task(
        "Hopper-v5", algo="cqsm", seed=1, total_steps=STEPS, out=native.out
    )
    new = four_tasks.cell_settings("cqsm", "Walker2d-v5", 3, tmp_path, total_steps=300)
    assert new.out == str(tmp_path / "four_tasks" / "cqsm") and new.total_steps == 300
    assert four_tasks.cell_settings("td3", "Hopper-v5", 4, tmp_path).out == str(
        tmp_path / "ch07_td3_check" / "more-seeds"
    )


def _rows(cells):
    """Hand-made rows: (algo, env, seed, last step) evaluated every 5000 steps."""
    return pd.DataFrame(
        [
            {"algo": a, "env": e, "seed": s, "step": k, "eval_return": float(k)}
            for a, e, s, last in cells
            for k in range(5000, last + 1, 5000)
        ]
    )


def test_coverage_counts_the_seeds_at_the_step():
    rows = _rows(
        [
            ("cqsm", "Hopper-v5", 1, STEPS),
            ("cqsm", "Hopper-v5", 2, STEPS),
            ("cqsm", "Hopper-v5", 0, 50_000),  # in progress
            ("td3", "Ant-v5", 0, STEPS),
            ("td3", "Ant-v5", 7, STEPS),  # not a planned seed
        ]
    )
    table = coverage(rows).set_index(["algo", "env"])
    assert len(table) == len(ALGOS) * len(TASKS)
    assert table.loc[("cqsm", "Hopper-v5")].to_dict() == {
        "seeds": (1, 2),
        "done": 2,
        "started": 1,
        "missing": 3,
    }
    assert table.loc[("td3", "Ant-v5"), "seeds"] == (0,)
    assert table.loc[("td3", "Ant-v5"), "missing"] == 4
    assert table.loc[("sac", "Walker2d-v5")].to_dict() == {
        "seeds": (),
        "done": 0,
        "started": 0,
        "missing": 5,
    }
    at_half = coverage(rows, step=50_000).set_index(["algo", "env"])
    assert at_half.loc[("cqsm", "Hopper-v5"), "seeds"] == (0, 1, 2)
    assert coverage(rows.iloc[:0]).done.sum() == 0


def test_read_runs_reads_reused_and_new_runs_once(tmp_path):
    def write(folder, algo, env, seed, last):
        run = tmp_path / folder / results.run_name(algo, env, seed)
        run.mkdir(parents=True)
        _rows([(algo, env, seed, last)]).to_csv(run / "results.csv", index=False)

    write("control_interval/native", "cqsm", "Hopper-v5", 1, 10_000)
    write("control_interval/native", "cqsm", "Hopper-v5", 7, 10_000)  # not reused
    write("four_tasks/cqsm", "cqsm", "Hopper-v5", 1, 10_000)  # a reused cell's: ignored
    write("four_tasks/cqsm", "cqsm", "Walker2d-v5", 0, 15_000)
    write("four_tasks/td3", "td3", "Pendulum-v1", 0, 5000)  # not a task of the plan
    rows = four_tasks.read_runs(tmp_path)
    assert list(rows.columns) == list(four_tasks.COLUMNS)
    assert sorted(set(zip(rows.env, rows.seed, rows.folder, strict=True))) == [
        ("Hopper-v5", 1, "control_interval/native"),
        ("Walker2d-v5", 0, "four_tasks/cqsm"),
    ]
    assert len(rows) == 2 + 3
    assert four_tasks.read_runs(tmp_path / "nothing").empty


def test_every_committed_run_has_the_settings_of_its_cell():
    root = results.repository_root() / "paper_figures" / "results"
    # No known exceptions: every committed run read here, chapter 7's included, has exactly
    # the settings TrainSettings.for_task gives its cell today (after cqsm.rl.migrate).
    checked = 0
    cells = [(a, e, s) for a in ALGOS for e in TASKS for s in SEEDS]
    for algo, env, seed in cells:
        settings = four_tasks.cell_settings(algo, env, seed, root)
        saved = settings.run_dir / "settings.json"
        if not saved.exists():
            continue
        saved = migrate_settings(results.read_json(saved))
        changed = results.changed_settings(saved, settings, FREE)
        assert not changed, (settings.run_dir, changed)
        checked += 1
    read = four_tasks.read_runs(root).groupby(["algo", "env", "seed"]).ngroups
    assert checked == read  # every run the comparison reads was checked
    assert checked >= 30


def test_the_aggregates_pool_the_tasks_where_every_compared_method_has_two_seeds():
    rows = _rows(
        [("cqsm", "Hopper-v5", s, STEPS) for s in (0, 1)]
        + [("td3", "Hopper-v5", s, STEPS) for s in (0, 1, 2)]
        + [("td3", "Ant-v5", s, STEPS) for s in (0, 1)]
        + [("cqsm", "Ant-v5", 0, STEPS), ("cqsm", "Ant-v5", 1, 10_000)]  # one seed at the end
    )
    compared, tasks = four_tasks.comparable_tasks(rows, (10_000, STEPS))
    assert compared == ["cqsm", "td3"] and tasks == ["Hopper-v5"]
    assert four_tasks.comparable_tasks(rows, (10_000,)) == (
        ["cqsm", "td3"],
        ["Hopper-v5", "Ant-v5"],
    )


def test_per_task_returns_give_an_interval_only_where_a_cell_has_two_seeds():
    rows = _rows([("td3", "Hopper-v5", s, STEPS) for s in (0, 1)] + [("sac", "Ant-v5", 0, STEPS)])
    rows.loc[rows.seed == 1, "eval_return"] += 10.0  # the two seeds differ
    table = four_tasks.per_task_returns(rows, (STEPS,), reps=200).set_index(["env", "algo"])
    td3, sac = table.loc[("Hopper-v5", "td3")], table.loc[("Ant-v5", "sac")]
    assert td3.seeds == 2 and td3["mean"] == STEPS + 5.0
    assert td3.low <= td3["mean"] <= td3.high and td3.high - td3.low > 0
    assert sac.seeds == 1 and pd.isna(sac.low) and pd.isna(sac.high)


def _table(cells, step=STEPS):
    """A hand-made table of per_task_returns: (env, algo, mean, seeds, low, high)."""
    keys = ("env", "algo", "mean", "seeds", "low", "high")
    return pd.DataFrame([dict(zip(keys, c, strict=True)) for c in cells]).assign(step=step)


NAN = float("nan")


def test_versus_reads_ahead_behind_level_from_the_intervals_and_means_from_one_seed():
    table = _table(
        [
            ("Hopper-v5", "cqsm", 100.0, 3, 90.0, 110.0),
            ("Hopper-v5", "td3", 50.0, 3, 40.0, 60.0),  # wholly below: ahead
            ("Hopper-v5", "sac", 105.0, 3, 95.0, 130.0),  # overlapping: level
            ("Hopper-v5", "qsm", 300.0, 1, NAN, NAN),  # one seed: the means only
            ("Ant-v5", "cqsm", 10.0, 2, 5.0, 15.0),
            ("Ant-v5", "td3", 30.0, 2, 20.0, 40.0),  # wholly above: behind
            ("Ant-v5", "sac", 0.0, 0, NAN, NAN),  # no seed yet: left out
        ]
    )
    states = four_tasks.versus(table, STEPS, ("td3", "sac", "qsm"))
    got = list(zip(states.env, states.baseline, states.state, states.higher, strict=True))
    assert got == [
        ("Hopper-v5", "td3", "ahead", True),
        ("Hopper-v5", "sac", "level", False),
        ("Hopper-v5", "qsm", "lower mean", False),
        ("Ant-v5", "td3", "behind", False),
    ]
    assert states.loc[0, "baseline_mean"] == 50.0 and states.loc[0, "cqsm_high"] == 110.0
    assert four_tasks.versus(table, 20_000, ("td3",)).empty  # no row at that step


def test_claim_holds_only_against_every_baseline_and_names_where_it_fails():
    states = pd.DataFrame(
        {
            "env": ["HalfCheetah-v5", "HalfCheetah-v5", "Hopper-v5", "Hopper-v5", "Ant-v5"],
            "baseline": ["td3", "sac", "td3", "sac", "td3"],
        }
    )
    found = four_tasks.claim(states, [True, True, True, False, True], ("td3", "sac"))
    assert found == {
        "holds": ["HalfCheetah-v5"],
        "fails": ["Hopper-v5"],
        "undecided": ["Walker2d-v5", "Ant-v5"],  # Ant-v5 lacks SAC's runs
        "against": [("sac", "Hopper-v5")],
    }


def test_target_compares_cqsm_with_the_best_of_td3_and_sac():
    table = _table(
        [
            ("HalfCheetah-v5", "cqsm", 5000.0, 3, NAN, NAN),
            ("HalfCheetah-v5", "td3", 4900.0, 3, NAN, NAN),
            ("HalfCheetah-v5", "sac", 6400.0, 3, NAN, NAN),
            ("Hopper-v5", "cqsm", 900.0, 3, NAN, NAN),
            ("Hopper-v5", "td3", 600.0, 3, NAN, NAN),
            ("Hopper-v5", "sac", 800.0, 3, NAN, NAN),
            ("Ant-v5", "cqsm", 900.0, 3, NAN, NAN),
            ("Ant-v5", "td3", 600.0, 3, NAN, NAN),
        ]
    )
    found = four_tasks.target(table, STEPS).set_index("env")
    assert list(found.index) == list(TASKS)
    assert found.loc["HalfCheetah-v5", ["rival", "rival_mean", "met"]].tolist() == [
        "sac",
        6400.0,
        False,
    ]
    assert found.loc["Hopper-v5", "met"] is True
    assert found.loc["Ant-v5", "met"] is None and found.loc["Walker2d-v5", "met"] is None


def test_warmup_steps_are_each_algorithms_own():
    warm = four_tasks.warmup_steps(("td3", "cqsm"), ("HalfCheetah-v5", "Ant-v5"))
    assert warm.loc["td3", "HalfCheetah-v5"] == 10_000  # TD3's paper: 10k on HalfCheetah
    assert warm.loc["td3", "Ant-v5"] == 10_000  # and on Ant
    cqsm = TrainSettings.for_task("Ant-v5", algo="cqsm").learning_starts
    assert warm.loc["cqsm", "Ant-v5"] == cqsm
    short = four_tasks.warmup_steps(("td3",), ("Ant-v5",), learning_starts=100)
    assert short.loc["td3", "Ant-v5"] == 100


def test_against_still_sets_each_mean_beside_a_body_that_does_nothing():
    table = _table(
        [
            ("Ant-v5", "cqsm", 988.0, 1, NAN, NAN),  # one seed, below standing still
            ("Ant-v5", "td3", 1200.0, 3, 1010.0, 1400.0),  # wholly above
            ("Ant-v5", "sac", 1100.0, 3, 900.0, 1300.0),  # mean above, interval not
            ("Hopper-v5", "td3", 500.0, 1, NAN, NAN),
        ]
    )
    still = pd.DataFrame({"env": ["Ant-v5", "Hopper-v5"], "mean": [1000.0, 140.0]})
    found = four_tasks.against_still(table, still, STEPS).set_index(["env", "algo"])
    assert found["margin"].to_dict() == {
        ("Ant-v5", "cqsm"): -12.0,
        ("Ant-v5", "td3"): 200.0,
        ("Ant-v5", "sac"): 100.0,
        ("Hopper-v5", "td3"): 360.0,
    }
    assert found["moves"].tolist() == [False, True, False, True]
    assert four_tasks.against_still(table, still, 20_000).empty
