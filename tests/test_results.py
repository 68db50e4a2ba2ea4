"""The committed results of long runs: complete, with provenance, and what their settings say."""

from pathlib import Path

import pandas as pd
import pytest

from cqsm import results
from cqsm.train import TrainSettings

RESULTS = Path(__file__).resolve().parent.parent / "paper_figures" / "results"
RUNS = sorted(p.parent for p in RESULTS.glob("*/*/*/settings.json"))


def test_there_are_committed_results():
    assert RUNS, f"no committed runs under {RESULTS}"


@pytest.mark.parametrize("run_dir", RUNS, ids=lambda p: str(p.relative_to(RESULTS)))
def test_committed_run_is_complete(run_dir):
    settings = TrainSettings(**results.read_json(run_dir / "settings.json"))
    assert run_dir.name == results.run_name(settings.algo, settings.env, settings.seed)
    rows = pd.read_csv(run_dir / "results.csv")
    assert rows["step"].max() == settings.total_steps
    assert list(rows["step"]) == sorted(set(rows["step"]))
    assert rows[["algo", "env", "seed"]].drop_duplicates().values.tolist() == [
        [settings.algo, settings.env, settings.seed]
    ]
    provenance = results.read_json(run_dir / "provenance.json")
    assert len(provenance["git"]["commit"]) == 40 and provenance["packages"]["torch"]
    assert provenance["steps"] == settings.total_steps
    assert (run_dir / "policy.pt").exists()
