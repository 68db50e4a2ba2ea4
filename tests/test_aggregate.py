"""Aggregate statistics on rliable: score matrices, normalisation, stratified bootstrap
intervals, profiles and the probability of improvement."""

import warnings

import numpy as np
import pandas as pd
import pytest

from cqsm.rl.aggregate import (
    AGGREGATES,
    Scores,
    aggregate_intervals,
    best_means,
    normalise,
    per_task_intervals,
    performance_profiles,
    probability_of_improvement,
    random_returns,
    score_matrices,
)

REPS = 200


def rows_of(cells, step=100):
    """Tidy rows from ``{(algo, env, seed): eval_return}`` at ``step``."""
    return pd.DataFrame(
        [
            {"algo": a, "env": e, "seed": s, "step": step, "eval_return": r}
            for (a, e, s), r in cells.items()
        ]
    )


@pytest.fixture
def scores():
    rng = np.random.default_rng(3)
    return Scores(
        {"good": rng.normal(0.8, 0.1, (5, 3)), "poor": rng.normal(0.3, 0.1, (5, 3))},
        tasks=("A", "B", "C"),
    )


def test_score_matrices_from_tidy_rows_at_the_step():
    rows = pd.concat(
        [
            rows_of(
                {
                    ("td3", "Hopper-v5", 1): 30.0,
                    ("td3", "Hopper-v5", 0): 10.0,
                    ("td3", "Ant-v5", 0): 1.0,
                    ("td3", "Ant-v5", 1): 3.0,
                    ("sac", "Ant-v5", 4): 5.0,
                    ("sac", "Hopper-v5", 4): 50.0,
                }
            ),
            rows_of({("td3", "Hopper-v5", 0): -99.0, ("sac", "Ant-v5", 7): -99.0}, step=50),
        ]
    )
    scores = score_matrices(rows, step=100)
    assert list(scores) == ["td3", "sac"]  # in the order they first come
    assert scores.tasks == ("Ant-v5", "Hopper-v5")  # sorted
    assert scores.seeds == {"td3": (0, 1), "sac": (4,)}
    np.testing.assert_array_equal(scores["td3"], [[1.0, 10.0], [3.0, 30.0]])
    np.testing.assert_array_equal(scores["sac"], [[5.0, 50.0]])
    only = score_matrices(rows, step=100, algos=["sac"], envs=["Hopper-v5", "Ant-v5"])
    assert list(only) == ["sac"] and only.tasks == ("Hopper-v5", "Ant-v5")
    np.testing.assert_array_equal(only["sac"], [[50.0, 5.0]])
    with pytest.raises(ValueError, match="No run"):
        score_matrices(rows, step=100, algos=["td3", "qsm"])
    with pytest.raises(ValueError, match="No run"):
        score_matrices(rows, step=70)


UNBALANCED = {
    ("td3", "A", 0): 1.0,
    ("td3", "A", 1): 2.0,
    ("td3", "A", 2): 3.0,
    ("td3", "B", 0): 4.0,
    ("td3", "B", 2): 5.0,
}
"""TD3's returns at step 100 by (algorithm, task, seed): seed 1 is missing on task B."""


def test_unbalanced_seeds_are_an_error_that_names_the_cells():
    rows = rows_of(UNBALANCED)
    with pytest.raises(ValueError) as err:
        score_matrices(rows, step=100)
    message = str(err.value)
    assert "td3 on A has 3 seeds (0, 1, 2)" in message
    assert "td3 on B has 2 seeds (0, 2)" in message
    assert "balanced='drop'" in message
    with pytest.raises(ValueError, match="balanced"):
        score_matrices(rows, step=100, balanced="ignore")


def test_balanced_drop_keeps_the_seeds_every_task_has_and_says_which_it_dropped():
    more = {("td3", "B", 3): 6.0, ("sac", "A", 0): 7.0, ("sac", "B", 0): 8.0}
    rows = rows_of(UNBALANCED | more)
    with pytest.warns(UserWarning) as record:
        scores = score_matrices(rows, step=100, balanced="drop")
    assert len(record) == 1  # sac is balanced: nothing to say about it
    message = str(record[0].message)
    assert "td3" in message and "A: 1" in message and "B: 3" in message
    assert scores.seeds == {"td3": (0, 2), "sac": (0,)}
    np.testing.assert_array_equal(scores["td3"], [[1.0, 4.0], [3.0, 5.0]])
    np.testing.assert_array_equal(scores["sac"], [[7.0, 8.0]])


def test_two_rows_of_one_run_at_a_step_are_an_error():
    rows = pd.concat([rows_of({("td3", "A", 0): 1.0}), rows_of({("td3", "A", 0): 2.0})])
    with pytest.raises(ValueError, match="More than one row"):
        score_matrices(rows, step=100)


def test_normalisation_against_a_hand_computation():
    scores = Scores({"x": [[0.0, 10.0], [5.0, 30.0]], "y": [[2.0, 20.0]]}, tasks=("A", "B"))
    low = pd.Series({"B": 10.0, "A": -5.0})  # by name, in any order
    out = normalise(scores, low=low, high={"A": 5.0, "B": 50.0})
    np.testing.assert_allclose(out["x"], [[0.5, 0.0], [1.0, 0.5]])  # (R - low) / (high - low)
    np.testing.assert_allclose(out["y"], [[0.7, 0.25]])
    assert out.tasks == ("A", "B")
    # The default reference: the best mean among the algorithms (A: x 2.5, B: x 20 = y 20).
    np.testing.assert_allclose(best_means(scores), [2.5, 20.0])
    default = normalise(scores, low=[0.0, 0.0])
    np.testing.assert_allclose(default["x"], [[0.0, 0.5], [2.0, 1.5]])
    with pytest.raises(ValueError, match="exceed"):
        normalise(scores, low=[0.0, 30.0], high=[1.0, 30.0])
    with pytest.raises(ValueError, match="no value"):
        normalise(scores, low={"A": 0.0}, high=[1.0, 1.0])


def test_iqm_is_the_mean_of_the_middle_half_of_the_pooled_scores():
    m = np.array([[0.1, 5.0], [0.9, 0.4], [0.3, -2.0], [0.7, 0.6]])  # 4 runs x 2 tasks
    middle = np.sort(m.ravel())[2:6]  # 8 scores: drop the two lowest and the two highest
    table = aggregate_intervals({"a": m}, reps=REPS).set_index("metric")
    assert list(table.index) == list(AGGREGATES)
    assert np.isclose(table.loc["IQM", "estimate"], middle.mean())
    assert np.isclose(table.loc["IQM", "estimate"], (0.4 + 0.3 + 0.6 + 0.7) / 4)
    assert np.isclose(table.loc["mean", "estimate"], m.mean())
    assert np.isclose(table.loc["median", "estimate"], np.median(m.mean(axis=0)))
    assert np.isclose(table.loc["optimality gap", "estimate"], 1 - np.minimum(m, 1).mean())


def test_intervals_contain_their_estimates(scores):
    per_task = per_task_intervals(scores, reps=REPS)
    assert list(per_task["env"]) == ["A", "B", "C"] * 2 and set(per_task["runs"]) == {5}
    np.testing.assert_allclose(
        per_task.loc[per_task["algo"] == "good", "mean"], scores["good"].mean(axis=0)
    )
    overall = aggregate_intervals(scores, reps=REPS)
    for table, point in ((per_task, "mean"), (overall, "estimate")):
        assert (table["low"] <= table[point]).all() and (table[point] <= table["high"]).all()
        assert (table["low"] < table["high"]).all()
    profiles = performance_profiles(scores, taus=[0.0, 0.5, 2.0], reps=REPS)
    assert (profiles["low"] <= profiles["fraction"]).all()
    assert (profiles["fraction"] <= profiles["high"]).all()
    good = profiles[profiles["algo"] == "good"].set_index("tau")["fraction"]
    assert good[0.0] == 1.0 and good[2.0] == 0.0
    assert good[0.5] == np.mean(scores["good"] > 0.5)


def test_every_interval_is_deterministic_for_its_seed(scores):
    close = {"p": scores["poor"], "q": scores["poor"][::-1] + 0.05}  # overlapping runs
    calls = {
        "per task": lambda seed: per_task_intervals(scores, reps=REPS, seed=seed),
        "aggregate": lambda seed: aggregate_intervals(scores, reps=REPS, seed=seed),
        "profiles": lambda seed: performance_profiles(scores, [0.3, 0.8], reps=REPS, seed=seed),
        "improvement": lambda seed: probability_of_improvement(
            close, "p", "q", reps=REPS, seed=seed
        ),
    }
    for name, call in calls.items():
        np.random.seed(123)  # noqa: NPY002 - the global state the caller had
        before = np.random.get_state()[1].copy()  # noqa: NPY002
        first = call(0)
        assert np.array_equal(np.random.get_state()[1], before), name  # noqa: NPY002
        np.random.seed(321)  # noqa: NPY002 - whatever the global state, the same result
        pd.testing.assert_frame_equal(first, call(0), obj=name)
        assert not first[["low", "high"]].equals(call(1)[["low", "high"]]), name


def test_an_algorithms_interval_does_not_depend_on_the_others(scores):
    alone = aggregate_intervals({"good": scores["good"]}, reps=REPS)
    together = aggregate_intervals(scores, reps=REPS)
    pd.testing.assert_frame_equal(alone, together[together["algo"] == "good"])


def test_probability_of_improvement_of_a_dominating_and_an_identical_algorithm(scores):
    table = probability_of_improvement(scores, "good", ["poor", "good"], reps=REPS)
    table = table.set_index("baseline")
    assert table.loc["poor", "probability"] == 1.0
    assert table.loc["poor", "low"] == table.loc["poor", "high"] == 1.0
    assert table.loc["good", "probability"] == 0.5  # identical scores
    assert table.loc["good", "low"] < 0.5 < table.loc["good", "high"]
    reverse = probability_of_improvement(scores, "poor", "good", reps=REPS)
    assert reverse.loc[0, "probability"] == 0.0
    with pytest.raises(ValueError, match="No scores"):
        probability_of_improvement(scores, "good", "sac", reps=REPS)


def test_matrices_of_the_wrong_shape_are_refused():
    with pytest.raises(ValueError, match="runs, tasks"):
        aggregate_intervals({"a": np.zeros(3)}, reps=REPS)
    with pytest.raises(ValueError, match="different numbers of tasks"):
        aggregate_intervals({"a": np.zeros((2, 3)), "b": np.zeros((2, 2))}, reps=REPS)


def test_random_returns_are_deterministic_for_a_seed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        first = random_returns(["Pendulum-v1"], episodes=2, seed=0)
    assert list(first.columns) == ["env", "episodes", "seed", "mean", "std"]
    assert first.loc[0, "env"] == "Pendulum-v1" and first.loc[0, "episodes"] == 2
    assert -2000 < first.loc[0, "mean"] < 0  # a random policy on Pendulum: far from upright
    pd.testing.assert_frame_equal(first, random_returns(["Pendulum-v1"], episodes=2, seed=0))
    other = random_returns(["Pendulum-v1"], episodes=2, seed=1)
    assert other.loc[0, "mean"] != first.loc[0, "mean"]


def test_holding_the_action_at_the_centre_earns_only_the_healthy_reward():
    import gymnasium as gym

    from cqsm.rl.aggregate import _Centre, centre_returns

    box = gym.spaces.Box(np.float32([0, -2]), np.float32([2, 0]))
    assert _Centre(box, 0).act(None).tolist() == [1.0, -1.0]
    still = centre_returns(["HalfCheetah-v5", "Hopper-v5"], episodes=1).set_index("env")
    assert abs(still.loc["HalfCheetah-v5", "mean"]) < 5  # no forward speed, no action cost
    # Hopper-v5: 1 per step while healthy, before the body topples and the episode ends
    assert 50 < still.loc["Hopper-v5", "mean"] < 300
    assert list(still.columns) == ["episodes", "seed", "mean", "std"]
