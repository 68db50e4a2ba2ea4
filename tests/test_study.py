"""Ablation studies: variants differ only where they say, and their rows come back labelled."""

import dataclasses

import pytest

from cqsm.rl.agents import CQSMSettings
from cqsm.rl.study import Variant, read_study, study_runs
from cqsm.rl.sweep import sweep
from cqsm.rl.train import TrainSettings


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
    assert (ref.agent.boundary, proj.agent.boundary) == ("reflect", "project")
    assert (ref.batch_size, proj.batch_size) == (256, 64)
    assert ref.agent.lam == proj.agent.lam == 0.01  # the task's preset stays under both
    assert ref.learning_starts == proj.learning_starts == 1_000


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
