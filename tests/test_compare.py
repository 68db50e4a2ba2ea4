"""Returns at fixed steps and their bootstrap intervals."""

import numpy as np
import pandas as pd
import pytest

from cqsm.rl.compare import (
    add_published,
    bootstrap_ci,
    control_intervals,
    interval,
    label,
    mean_std,
    means_table,
    percent,
    published_checks,
    ratio_text,
    read_published,
    returns_at,
    returns_by_step,
    returns_table,
)


def test_bootstrap_interval_of_the_mean_against_normal_theory():
    rng = np.random.default_rng(1)
    x = rng.normal(3.0, 2.0, size=400)
    low, high = bootstrap_ci(x)
    half = 1.96 * x.std(ddof=1) / np.sqrt(x.size)
    assert abs(low - (x.mean() - half)) < 0.05 and abs(high - (x.mean() + half)) < 0.05
    assert bootstrap_ci([5.0]) == (5.0, 5.0)
    assert all(np.isnan(bootstrap_ci([])))


def test_returns_at_uses_each_runs_row_at_the_step_and_counts_seeds():
    rows = pd.DataFrame(
        {
            "env": ["E"] * 5,
            "algo": ["td3"] * 5,
            "seed": [0, 0, 1, 1, 2],
            "step": [10, 20, 10, 20, 10],  # seed 2 has not reached step 20
            "eval_return": [1.0, 4.0, 3.0, 6.0, 5.0],
        }
    )
    table = returns_at(rows, steps=(10, 20)).set_index("step")
    assert table.loc[10, "seeds"] == 3 and table.loc[10, "mean"] == 3.0
    assert table.loc[20, "seeds"] == 2 and table.loc[20, "mean"] == 5.0
    assert np.isclose(table.loc[20, "std"], np.std([4.0, 6.0], ddof=1))
    assert 4.0 <= table.loc[20, "ci_low"] <= table.loc[20, "ci_high"] <= 6.0
    assert label("diffusion_ql") == "Diffusion-QL" and label("new") == "new"


def test_means_intervals_and_shares_read_as_a_reader_expects():
    assert mean_std(1234.4, 56.6) == "1234 ± 57"
    assert mean_std(0.0312, 0.0041, ".2%") == "3.12% ± 0.41%"
    assert mean_std(12.0, np.nan) == "12" and mean_std(np.nan, np.nan) == "–"
    assert interval(-1.26, 3.5) == "[-1, 4]" and interval(np.nan, np.nan) == "–"
    assert percent(0.874) == "87%" and percent(1.0) == "100%" and percent(np.nan) == "–"


def test_returns_table_formats_each_entry_and_its_published_range():
    rows = pd.DataFrame(
        {
            "env": ["E"] * 5 + ["F"],
            "algo": ["td3", "td3", "td3", "sac", "sac", "td3"],
            "seed": [0, 1, 2, 0, 1, 0],
            "step": [10, 10, 10, 10, 20, 10],
            "eval_return": [100.0, 200.0, 600.0, 50.0, 70.0, 7.0],
        }
    )
    published = pd.DataFrame(
        {
            "algo": ["td3", "td3"],
            "env": ["E", "F"],
            "step": [10, 10],
            "published_low": [250.0, 6.0],
            "published_high": [300.0, 6.0],
            "source": ["paper", "paper"],
        }
    )
    table = add_published(returns_at(rows, steps=(10, 20)), published)
    assert "source" not in table and table.published_low.isna().sum() == 4
    assert add_published(table, pd.DataFrame()) is table
    shown = returns_table(table)
    assert list(shown.columns) == ["seeds", "mean ± std", "95% CI", "published"]
    assert list(shown.index) == [
        ("E", 10, "SAC"),
        ("E", 10, "TD3"),
        ("E", 20, "SAC"),
        ("E", 20, "TD3"),
        ("F", 10, "TD3"),
        ("F", 20, "TD3"),
    ]
    # TD3 on E at 10: mean 300, std sqrt(((-200)^2 + (-100)^2 + 300^2) / 2) = sqrt(70000)
    td3 = shown.loc[("E", 10, "TD3")]
    assert td3["mean ± std"] == "300 ± 265" and td3["published"] == "250–300"
    low, high = bootstrap_ci([100.0, 200.0, 600.0])
    assert td3["95% CI"] == f"[{low:.0f}, {high:.0f}]"
    assert shown.loc[("E", 10, "SAC")].tolist() == [1, "50", "[50, 50]", "–"]
    assert shown.loc[("E", 20, "TD3")].tolist() == [0, "–", "–", "–"]
    assert shown.loc[("F", 10, "TD3"), "published"] == "6"
    assert "published" not in returns_table(returns_at(rows, steps=(10,)))


def test_control_intervals_are_simulated_seconds_per_step():
    rows = pd.DataFrame({"step": [100, 500, 250], "sim_time": [5.0, 5.0, 2.0000001]})
    assert control_intervals(rows).tolist() == [0.05, 0.01, 0.008]
    assert control_intervals(rows).name == "dt"


def test_ratios_read_as_percentages_with_their_interval():
    assert ratio_text(0.4512, 0.31, 0.624) == "45% [31%, 62%]"
    assert ratio_text(1.0, np.nan, np.nan) == "100%" and ratio_text(np.nan, 0, 1) == "–"


def test_means_table_formats_means_intervals_and_ratios_by_the_other_columns():
    table = pd.DataFrame(
        {
            "env": ["E", "E"],
            "method": ["TD3", "TD3"],
            "dt": [0.01, 0.05],
            "seeds": [2, 1],
            "mean": [1234.4, 50.0],
            "std": [56.6, np.nan],
            "ci_low": [1190.0, 50.0],
            "ci_high": [1270.0, 50.0],
            "ratio": [0.45, 1.0],
            "ratio_low": [0.31, 1.0],
            "ratio_high": [0.62, 1.0],
        }
    )
    shown = means_table(table, ratio="of native")
    assert shown.index.names == ["env", "method", "dt"]
    assert list(shown.columns) == ["seeds", "mean ± std", "95% CI", "of native"]
    assert shown.loc[("E", "TD3", 0.01)].tolist() == [
        2,
        "1234 ± 57",
        "[1190, 1270]",
        "45% [31%, 62%]",
    ]
    assert shown.loc[("E", "TD3", 0.05), "mean ± std"] == "50"
    both = means_table({"early": table, "late": table.drop(columns=["ratio"])})
    assert list(both.columns.get_level_values(0)) == ["early"] * 4 + ["late"] * 3
    assert both[("late", "seeds")].tolist() == [2, 1]


def test_returns_by_step_puts_each_step_in_a_column_in_the_order_the_methods_come():
    rows = pd.DataFrame(
        {
            "env": ["E"] * 3 + ["F"] + ["E"] * 2,
            "algo": ["td3", "td3", "td3", "td3", "sac", "sac"],
            "seed": [0, 1, 0, 0, 0, 0],
            "step": [10, 10, 20, 10, 10, 20],
            "eval_return": [100.0, 200.0, 600.0, 7.0, 50.0, 70.0],
        }
    )
    wide = returns_by_step(returns_at(rows, steps=(10, 20)))
    assert list(wide.index) == [("E", "TD3"), ("E", "SAC"), ("F", "TD3")]  # by task
    assert list(wide.columns) == [10, 20, "seeds"]
    assert wide.loc[("E", "TD3")].tolist() == ["150 ± 71", "600", 1]
    assert wide.loc[("F", "TD3")].tolist() == ["7", "–", 0]


def test_published_checks_share_of_the_low_end_and_verdict():
    table = pd.DataFrame(
        {
            "step": [10, 10, 10, 10, 10],
            "seeds": [3, 2, 0, 3, 2],
            "mean": [270.0, 5.0, np.nan, 1.0, 340.0],
            "published_low": [300.0, 6.0, 100.0, np.nan, 200.0],  # SAC: no published value
            "published_high": [300.0, 6.0, 100.0, np.nan, 300.0],
        }
    ).assign(algo=["td3", "td3", "td3", "sac", "td3"], env=["E", "F", "G", "E", "H"])
    checks = published_checks(table)
    assert list(checks.env) == ["E", "F", "G", "H"]
    assert checks.share.iloc[0] == 0.9 and checks.verdict.iloc[0] == "within 10%"
    assert checks.verdict.iloc[1] == "more than 10% short"  # 5/6 = 83%
    assert checks.verdict.iloc[2] == "no run yet"
    assert checks.verdict.iloc[3] == "more than 10% above"  # 340 > 1.1 x 300
    assert published_checks(table, tolerance=0.2).verdict.iloc[1] == "within 20%"
    assert published_checks(table.drop(columns="published_low")).empty


def test_read_published_checks_its_columns(tmp_path):
    assert read_published(tmp_path / "none.csv").empty
    path = tmp_path / "published.csv"
    path.write_text("algo,env,step,published_low\ntd3,E,10,5\n")
    with pytest.raises(ValueError, match="published_high.*source"):
        read_published(path)
    path.write_text("algo,env,step,published_low,published_high,source\ntd3,E,10,5,6,p\n")
    assert read_published(path).published_high.tolist() == [6]


def test_the_committed_published_values_have_sources():
    from cqsm.pipeline.manifest import find_root

    path = find_root() / "paper_figures" / "results" / "ch07_locomotion" / "published.csv"
    published = read_published(path)
    assert set(published.env) == {"HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"}
    assert (published.published_low <= published.published_high).all()
    assert published.source.str.contains("TD3 paper").all()


def _two_seeds():
    return pd.DataFrame(
        {
            "env": ["a"] * 6 + ["b"] * 6,
            "seed": [0, 0, 0, 1, 1, 1] * 2,
            "step": [1, 2, 3] * 4,
            "eval_return": [0, 5, 4, 1, 2, 6, -3, -2, -1, 0, 0, 0],
            "sps": [9, 10, 12, 9, 11, 13, 1, 2, 3, 4, 5, 6],
        }
    )


def test_final_summary_reads_each_groups_last_step_best_returns_and_speed():
    from cqsm.rl.compare import final_summary

    table = final_summary(_two_seeds(), ["env"])
    a = table.loc["a"]
    assert a["steps"] == 3 and a["seeds"] == 2
    assert a["final return"] == 5.0 and a["std"] == pytest.approx(np.std([4, 6], ddof=1))
    assert a["best return"] == 5.5  # seed 0's best 5, seed 1's 6
    assert a["steps/s"] == 11.5  # the first row's speed left out
    assert table.loc["b", "final return"] == -0.5 and table.index.name == "env"


def test_first_reached_gives_each_seeds_first_step_and_the_end():
    from cqsm.rl.compare import first_reached

    rows = _two_seeds()
    table = first_reached(rows, 4, ["env"])
    assert table.loc["a", "first steps"] == [2, 3] and table.loc["a", "at the end"] == 2
    assert table.loc["a", "met"] and not table.loc["b", "met"]
    assert table.loc["b", "reached"] == 0 and table.loc["b", "first steps"] == []
    below = first_reached(rows[rows.env == "b"], -2, below=True).loc["all"]
    assert below["first steps"] == [1] and below["at the end"] == 0 and not below["met"]
    assert below["seeds"] == 2 and below["final"] == -0.5


def test_window_means_and_summary_average_each_seeds_window_then_across_seeds():
    from cqsm.rl.compare import window_means, window_summary

    rows = _two_seeds()
    per_seed = window_means(rows, 2, 3, ["env"])
    assert per_seed.loc[("a", 0)] == 4.5 and per_seed.loc[("a", 1)] == 4.0  # steps 2-3
    assert window_means(rows[rows.env == "a"], 1, 1).tolist() == [0.0, 1.0]  # by seed
    table = window_summary(rows, 2, 3, ["env"])
    assert table.loc["a", "mean"] == 4.25 and table.loc["a", "seeds"] == 2
    assert table.loc["b", "std"] == pytest.approx(np.std([-1.5, 0.0], ddof=1))


def test_seed_range_and_seeds_below():
    from cqsm.rl.compare import seed_range, seeds_below

    rows = _two_seeds()
    spread = seed_range(rows, 2, ["env"])
    assert spread.loc["a", ("min", 0)] == 4 and spread.loc["a", ("max", 1)] == 6
    runs = pd.DataFrame({"env": ["a", "b", "a"], "eval_return": [4.5, 0.0, 10.0]})
    reference = rows[rows.step == 3]  # a: 4 and 6; b: -1 and 0
    assert seeds_below(runs, reference) == [1, 1, 2]


def test_shares_of_gives_each_algorithms_returns_by_step_and_its_share_of_a_reference():
    from cqsm.rl.compare import shares_of

    table = pd.DataFrame(
        {
            "algo": ["a", "a", "td3", "td3", "b"],
            "step": [10, 20, 10, 20, 10],
            "mean": [1.0, 50.0, 2.0, 200.0, 3.0],
            "seeds": [1, 1, 3, 2, 1],
        }
    )
    wide = shares_of(table, "td3", order=["b", "a", "td3", "missing"])
    assert list(wide.index) == ["b", "a", "td3"]
    assert list(wide.columns) == ["return at 10", "return at 20", "seeds", "of TD3's"]
    assert wide.loc["a", "of TD3's"] == "25%" and wide.loc["td3", "seeds"] == 3
    assert pd.isna(wide.loc["b", "return at 20"])
    assert "of TD3's" not in shares_of(table[table.algo != "td3"], "td3")


def test_side_by_side_puts_methods_in_columns_with_a_share_and_seeds():
    from cqsm.rl.compare import side_by_side

    table = pd.DataFrame(
        {
            "env": ["h"] * 4,
            "step": [10, 10, 20, 20],
            "algo": ["cqsm", "td3", "cqsm", "td3"],
            "mean": [50.4, 100.0, 300.0, 200.0],
            "seeds": [2, 3, 1, 3],
        }
    )
    wide = side_by_side(table, "cqsm", "td3")
    assert list(wide.columns) == ["CQSM", "TD3", "CQSM / TD3", "CQSM seeds"]
    assert wide.loc[("h", 10), "CQSM"] == 50.0 and wide.loc[("h", 10), "CQSM / TD3"] == "50%"
    assert wide.loc[("h", 20), "CQSM / TD3"] == "150%" and wide.loc[("h", 20), "CQSM seeds"] == 1
    assert "CQSM / TD3" not in side_by_side(table[table.algo == "cqsm"], "cqsm", "td3")


def test_runs_beside_gives_each_run_every_so_many_steps_beside_a_reference_mean():
    from cqsm.rl.compare import runs_beside

    rows = pd.DataFrame(
        {
            "variant": ["v"] * 4,
            "seed": [0, 0, 0, 0],
            "step": [5, 10, 15, 20],
            "eval_return": [1.0, 2.0, 3.0, 4.0],
        }
    )
    reference = pd.DataFrame({"seed": [0, 1], "step": [10, 10], "eval_return": [6.0, 8.0]})
    side = runs_beside(rows, reference, 10, "ref")
    assert list(side.index) == [10, 20] and list(side.columns) == ["v, seed 0", "ref"]
    assert side.loc[10, "ref"] == 7.0 and np.isnan(side.loc[20, "ref"])
    assert side["v, seed 0"].tolist() == [2.0, 4.0]
    assert runs_beside(rows, reference.iloc[:0], 10, "ref")["ref"].isna().all()
