"""The committed results of long runs: complete, with provenance, portable, one copy of each,
loadable, and what their settings say."""

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from cqsm.rl import migrate, results
from cqsm.rl.runs import load_run
from cqsm.rl.train import TrainSettings

RESULTS = Path(__file__).resolve().parent.parent / "paper_figures" / "results"
RUNS = sorted(p.parent for p in RESULTS.glob("**/settings.json") if p.parent.parent != RESULTS)


def test_there_are_committed_results():
    assert RUNS, f"no committed runs under {RESULTS}"


@pytest.mark.parametrize("run_dir", RUNS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_run_is_complete_or_consistently_in_progress(run_dir):
    """A finished run has every row and its policy; a run still training (its chapter says so)
    has consistent rows and provenance up to where it has got. A run made with a setting since
    removed is data only: it refuses to load, and its rows are checked against its saved
    settings as they are."""
    saved = results.read_json(run_dir / "settings.json")
    try:
        migrate.migrate_settings(saved)
    except migrate.RemovedSetting:
        with pytest.raises(migrate.RemovedSetting):
            load_run(run_dir)
        settings = SimpleNamespace(**saved)
        assert run_dir.name == results.run_name(settings.algo, settings.env, settings.seed)
    else:
        if (run_dir / "policy.pt").exists():  # the settings, the env and the policy load
            settings = load_run(run_dir)[0]
        else:  # a run still in progress (its checkpoint is not committed)
            settings = TrainSettings.from_saved(saved)
        assert run_dir.name == settings.run_dir.name
    rows = pd.read_csv(run_dir / "results.csv")
    last = rows["step"].max()
    assert last <= settings.total_steps
    assert list(rows["step"]) == list(range(settings.eval_every, last + 1, settings.eval_every))
    assert rows[["algo", "env", "seed"]].drop_duplicates().values.tolist() == [
        [settings.algo, settings.env, settings.seed]
    ]
    provenance = results.read_json(run_dir / "provenance.json")
    assert len(provenance["git"]["commit"]) == 40 and provenance["packages"]["torch"]
    assert provenance["steps"] == last
    assert (run_dir / "policy.pt").exists() == (last == settings.total_steps)


def test_committed_runs_are_migrated_and_portable():
    """Every committed run is in the current settings' terms (``python -m cqsm.rl.migrate``
    changes nothing) and names no machine's folders."""
    for path in RESULTS.glob("**/settings.json"):
        assert migrate.migrate_run(path.parent, write=False) == [], path
        out = results.read_json(path)["out"]
        assert not Path(out).is_absolute() and out.startswith("paper_figures/results/"), path


def test_each_committed_run_is_committed_once():
    digests: dict[str, Path] = {}
    for run_dir in RUNS:
        digest = hashlib.sha256((run_dir / "results.csv").read_bytes()).hexdigest()
        assert digest not in digests, f"{run_dir} is a copy of {digests[digest]}"
        digests[digest] = run_dir


def test_read_runs_reads_every_run_below_a_folder_in_path_order(tmp_path):
    def run(folder, algo, env, seed, returns, extra=None):
        rows = {
            "algo": algo,
            "env": env,
            "seed": seed,
            "step": [10, 20][: len(returns)],
            "eval_return": returns,
        } | (extra or {})
        (tmp_path / folder).mkdir(parents=True)
        pd.DataFrame(rows).to_csv(tmp_path / folder / "results.csv", index=False)

    run("td3/td3-E-s1", "td3", "E", 1, [3.0, 4.0])
    run("td3/td3-E-s0", "td3", "E", 0, [1.0, 2.0])
    run("sac/sac-F-s0", "sac", "F", 0, [5.0], {"alpha": [0.2]})
    everything = results.read_runs(tmp_path)
    # sac/ before td3/, s0 before s1; one index; a column of one run only is NaN elsewhere
    assert everything[["algo", "seed", "eval_return"]].values.tolist() == [
        ["sac", 0, 5.0],
        ["td3", 0, 1.0],
        ["td3", 0, 2.0],
        ["td3", 1, 3.0],
        ["td3", 1, 4.0],
    ]
    assert list(everything.index) == [0, 1, 2, 3, 4]
    assert everything["alpha"].isna().sum() == 4
    td3 = results.read_runs(tmp_path, algo="td3", seed=[1])
    assert td3.eval_return.tolist() == [3.0, 4.0] and "alpha" not in td3  # sac adds nothing
    assert results.read_runs(tmp_path, env=("E", "F")).eval_return.sum() == 15.0
    assert results.read_runs(tmp_path / "sac").eval_return.tolist() == [5.0]
    assert results.read_runs(tmp_path, algo="qsm").empty
    assert results.read_runs(tmp_path / "nothing-here").empty


def test_steps_reached_gives_each_runs_last_step_by_seed():
    import pandas as pd

    from cqsm.rl.results import steps_reached

    rows = pd.DataFrame(
        {"algo": ["td3", "td3", "td3", "sac"], "seed": [0, 0, 1, 0], "step": [5, 10, 5, 5]}
    )
    reached = steps_reached(rows, ["algo"])
    assert reached.loc["td3", 0] == 10 and reached.loc["td3", 1] == 5
    assert reached.loc["sac", 0] == 5 and pd.isna(reached.loc["sac", 1])
    assert (reached == 10).sum().sum() == 1
    assert steps_reached(rows.iloc[:0], ["algo"]).empty
