"""The committed results of long runs: complete, with provenance, portable, one copy of each,
loadable, and what their settings say."""

import hashlib
from pathlib import Path

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
    has consistent rows and provenance up to where it has got."""
    if (run_dir / "policy.pt").exists():  # the settings, the env and the trained policy load
        settings = load_run(run_dir)[0]
    else:  # a run still in progress (its checkpoint is not committed)
        settings = TrainSettings.from_saved(results.read_json(run_dir / "settings.json"))
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
