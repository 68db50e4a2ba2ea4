"""The committed results of long runs: complete, with provenance, and what their settings say."""

from pathlib import Path

import pandas as pd
import pytest

from cqsm import results
from cqsm.train import TrainSettings

RESULTS = Path(__file__).resolve().parent.parent / "paper_figures" / "results"
RUNS = sorted(p.parent for p in RESULTS.glob("**/settings.json") if p.parent.parent != RESULTS)


def test_there_are_committed_results():
    assert RUNS, f"no committed runs under {RESULTS}"


@pytest.mark.parametrize("run_dir", RUNS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_run_is_complete_or_consistently_in_progress(run_dir):
    """A finished run has every row and its policy; a run still training (its chapter says so)
    has consistent rows and provenance up to where it has got."""
    settings = TrainSettings(**results.read_json(run_dir / "settings.json"))
    assert run_dir.name == results.run_name(settings.algo, settings.env, settings.seed)
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
