"""Saved runs: the settings, env and trained agent of a run folder.

settings, env, agent = load_run("paper_figures/results/ch07_locomotion/td3-Hopper-v5-s0")
"""

from __future__ import annotations

from pathlib import Path

from cqsm.rl import results
from cqsm.rl.train import TrainSettings, make_agent, make_env

__all__ = ["load_run"]


def load_run(run_dir: Path, render_mode: str | None = None, whole: bool = False):
    """The settings, evaluation env and trained agent of a saved run.

    The agent's weights come from ``policy.pt`` (written when training ends) or else from the
    latest ``checkpoint.pt``; with ``whole=True`` always from ``checkpoint.pt``, critics and all
    (checkpoints are not committed: this needs the machine that trained the run).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "settings.json").exists():
        raise results.RunError(f"{run_dir} is not a run folder (no settings.json).")
    settings = TrainSettings.from_saved(results.read_json(run_dir / "settings.json"))
    env = make_env(settings, explore=False, render_mode=render_mode)
    agent = make_agent(settings, env)
    policy = run_dir / "policy.pt"
    if policy.exists() and not whole:
        agent.load_policy_state_dict(results.load_checkpoint(policy, weights_only=True)["policy"])
    else:
        agent.load_state_dict(results.load_checkpoint(run_dir / "checkpoint.pt")["agent"])
    return settings, env, agent
