"""Ablation studies: variants differ only where they say, and their rows come back labelled."""

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from cqsm.rl import results, study
from cqsm.rl.agents import CQSMSettings
from cqsm.rl.arms import HOPPER_LIMIT, RECIPE, VARIANTS
from cqsm.rl.study import Variant, read_study, study_runs
from cqsm.rl.sweep import sweep
from cqsm.rl.train import TrainSettings

STUDY = Path(__file__).resolve().parent.parent / "paper_figures" / "results" / "ch08_cqsm_study"


def test_variants_override_only_what_they_name(tmp_path):
    variants = [
        Variant("reference", {"actor": "feynman_kac"}),
        Variant("projected", {"actor": "feynman_kac", "boundary": "project"}, {"batch_size": 64}),
    ]
    runs = study_runs(variants, ["Pendulum-v1"], seeds=(0, 1), total_steps=500, out=tmp_path)
    assert [(r.run_dir.parent.name, r.seed) for r in runs] == [
        ("reference", 0),
        ("projected", 0),
        ("reference", 1),
        ("projected", 1),
    ]
    ref, proj = runs[0], runs[1]
    default = TrainSettings.for_task("Pendulum-v1")  # CQSM's physical default on the task
    assert (ref.agent.boundary, proj.agent.boundary) == (default.agent.boundary, "project")
    assert (ref.batch_size, proj.batch_size) == (default.batch_size, 64)
    assert ref.agent.lam == proj.agent.lam == default.agent.lam  # it stays under both
    assert ref.learning_starts == proj.learning_starts == default.learning_starts
    # per-task settings on top, and the library's defaults instead of the task's
    arm = Variant("arm", {"lam": 0.1}, tasks={"Hopper-v5": ({"lam": 0.2}, {"batch_size": 7})})
    on = {env: arm.settings(env, 0, 100, tmp_path) for env in ("Pendulum-v1", "Hopper-v5")}
    assert (on["Pendulum-v1"].agent.lam, on["Hopper-v5"].agent.lam) == (0.1, 0.2)
    assert (on["Pendulum-v1"].batch_size, on["Hopper-v5"].batch_size) == (100, 7)


def test_a_study_runs_and_reads_back(tmp_path):
    variants = [Variant("a", {"actor": "feynman_kac"}), Variant("b", {"boundary": "project"})]
    runs = study_runs(variants, ["Pendulum-v1"], seeds=(0,), total_steps=300, out=tmp_path)
    quick = dict(learning_starts=100, eval_every=300, n_eval=1, progress=False)
    runs = [dataclasses.replace(r, **quick) for r in runs]
    sweep(runs, workers=1)
    rows = read_study(tmp_path, variants)
    assert sorted(rows["variant"].unique()) == ["a", "b"]
    assert set(rows["step"]) == {300}


def test_bad_variants_are_refused(tmp_path):
    with pytest.raises(ValueError, match="plain folder name"):
        Variant("../elsewhere")
    with pytest.raises(ValueError, match="share a name"):
        study_runs([Variant("a"), Variant("a")], ["Pendulum-v1"], (0,), 100, tmp_path)


def test_an_arm_can_stand_on_the_library_defaults_rather_than_the_tasks_presets(tmp_path):
    on_presets = Variant("recipe").settings("HalfCheetah-v5", 0, 1000, tmp_path)
    on_library = Variant("old", task_presets=False).settings("HalfCheetah-v5", 0, 1000, tmp_path)
    assert on_presets.agent.warmup == "action" and on_presets.batch_size == 100
    assert on_library.agent == CQSMSettings() and on_library.batch_size == 256
    assert on_library.learning_starts == TrainSettings().learning_starts


def test_a_removed_arm_is_read_but_never_run(tmp_path):
    kept, gone = Variant("kept"), Variant("gone", {"q_unit": 0.05}, removed="q_unit is gone")
    assert [
        r.run_dir.parent.name
        for r in study_runs([kept, gone], ["Pendulum-v1"], (0,), 100, tmp_path)
    ] == ["kept"]
    with pytest.raises(ValueError, match="can no longer run: q_unit is gone"):
        gone.settings("Pendulum-v1", 0, 100, tmp_path)
    run = tmp_path / "gone" / "cqsm-Pendulum-v1-s0"
    run.mkdir(parents=True)
    pd.DataFrame(
        {
            "algo": ["cqsm"],
            "env": ["Pendulum-v1"],
            "seed": [0],
            "step": [100],
            "eval_return": [-7.0],
        }
    ).to_csv(run / "results.csv", index=False)
    rows = read_study(tmp_path, [kept, gone])
    assert rows[["variant", "eval_return"]].values.tolist() == [["gone", -7.0]]


def test_every_arm_of_chapter_8_is_what_its_committed_runs_ran():
    """The arms' names and settings name the committed run folders: an arm that changed would
    no longer describe (or resume) its runs."""
    checked = set()
    for arm in (*VARIANTS, HOPPER_LIMIT, RECIPE):
        for path in sorted((STUDY / arm.name).glob("*/settings.json")):
            if arm.removed:  # read, never re-run: only its rows need to be there
                assert (path.parent / "results.csv").exists(), path
                continue
            saved = results.read_json(path)
            mine = arm.settings(saved["env"], saved["seed"], saved["total_steps"], STUDY)
            free = {"out", "sources", "progress", "resume"}  # how it ran, not what
            assert results.changed_settings(saved, mine, free=free) == [], path
            checked.add(arm.name)
    assert {"fk-reflect", "fk-relax-td3-all-warmup", "hopper-td3-limit", "recipe"} <= checked
    assert [v.name for v in VARIANTS if v.removed] == ["fk-reflect-qunit"]


def test_critic_diagnostics_measure_the_runs_with_critics_sorted(tmp_path, monkeypatch):
    monkeypatch.setattr(study, "diagnose_run", lambda path, n_states: {"n": n_states * 10})
    dirs = []
    for arm, seed, files in [
        ("b", 1, ("policy.pt", "checkpoint.pt")),
        ("a", 0, ("policy.pt",)),
        ("b", 0, ("policy.pt", "checkpoint.pt")),
        ("a", 2, ("policy.pt", "checkpoint.pt")),
    ]:
        run = tmp_path / arm / f"cqsm-Pendulum-v1-s{seed}"
        run.mkdir(parents=True)
        results.write_json(run / "settings.json", {"seed": seed})
        for name in files:
            (run / name).write_bytes(b"")
        dirs.append(run)
    out = tmp_path / "critic_diagnostics.csv"
    study.write_critic_diagnostics(out, dirs, n_states=3)
    # ("a", 0) has no checkpoint, so no critics: passed over; the rest sorted by arm, then seed
    assert pd.read_csv(out).values.tolist() == [["a", 2, 30], ["b", 0, 30], ["b", 1, 30]]
    assert (tmp_path / "critic_diagnostics.provenance.json").exists()
    assert study.critic_diagnostics([]).columns.tolist() == ["variant", "seed"]


def test_the_arms_settings_read_as_a_table_per_task():
    arms = {
        "A-v0": [Variant("x", {"lam": 0.1}, {"batch_size": 100}, note="a price"), Variant("y")],
        "B-v0": [Variant("x", {"lam": 0.2}), Variant("y", note="the reference")],
    }
    table = study.variant_table(arms, keys=("lam", "batch_size"), note=False)
    assert table.index.names == ["task", "arm"] and list(table.columns) == ["lam", "batch_size"]
    assert table.loc[("A-v0", "x")].tolist() == [0.1, 100]
    assert table.loc[("B-v0", "y")].tolist() == ["–", "–"]
    notes = study.variant_table(arms["A-v0"])
    assert list(notes.columns) == ["note"] and notes.loc["x", "note"] == "a price"
