"""Evaluating policies: the protocol's episodes and recordings of a trained policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cqsm.rl.envs import interval_of
from cqsm.rl.rollout import episode

__all__ = ["evaluate", "eval_seed", "episode_seed", "record", "EVAL_SEED_BASE"]

# Evaluation episodes start from env seeds EVAL_SEED_BASE + 1000 * seed + i, apart from training's.
EVAL_SEED_BASE = 2**20


def episode_seed(seed: int, i: int) -> int:
    """The env seed that evaluation episode ``i`` of a run of seed ``seed`` starts from."""
    return EVAL_SEED_BASE + 1000 * seed + i


def eval_seed(seed: int, step: int) -> int:
    """The seed of the torch generator that an evaluation of a run at ``step`` acts with."""
    return int(np.random.SeedSequence([EVAL_SEED_BASE, seed, step]).generate_state(1)[0])


def evaluate(
    agent,
    env,
    n_episodes: int,
    seed: int,
    frames: list | None = None,
    actions: list | None = None,
    step: int = 0,
    native: bool = True,
    episode_actions: list | None = None,
) -> np.ndarray:
    """Returns of ``n_episodes`` episodes without exploration noise, from fixed start seeds.

    Returns are in the env's native units (:attr:`cqsm.rl.envs.Interval.reward_scale`; identical to
    the plain sums at the env's own interval), or with ``native=False`` the plain sums of the
    control steps' rewards. Whatever random numbers the agent draws while acting (SAC's
    sample, the diffusion policies' chains) come from torch's generator seeded by
    :func:`eval_seed` of ``seed`` and ``step``, and training's random state is restored
    afterwards: evaluating never changes training, and the evaluation at a step is the same
    whatever the schedule of evaluations.

    With ``frames`` a list, each step of the first episode appends ``(frame, obs)`` to it, where
    ``frame`` is ``env.render()`` (``None`` unless the env renders) and ``obs`` the observation.
    With ``actions`` a list, each step of the first episode appends the action the environment
    applied (for CQSM the action process's value, not the score). With ``episode_actions`` a
    list, every episode appends to it the list of the actions it applied.
    """
    returns = np.zeros(n_episodes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(eval_seed(seed, step))
        for i in range(n_episodes):
            shown = frames if i == 0 else None  # the first episode's frames and actions
            applied = []

            def act(obs, shown=shown):
                if shown is not None:
                    shown.append((env.render() if env.render_mode else None, obs))
                return agent.act(obs, explore=False)

            for move in episode(env, act, seed=episode_seed(seed, i)):
                applied.append(move.info.get("applied_action", move.action))
                returns[i] += move.reward
            if actions is not None and i == 0:
                actions.extend(applied)
            if episode_actions is not None:
                episode_actions.append(applied)
    return returns * interval_of(env).reward_scale if native else returns


def record(frames: list, path: Path, fps: float) -> Path:
    """Write rendered frames (``H x W x 3`` arrays) as an animated GIF, atomically."""
    from PIL import Image

    from cqsm.atomic import atomic_write

    images = [Image.fromarray(np.asarray(f, dtype=np.uint8)) for f in frames if f is not None]
    if not images:
        raise ValueError("No frames to record: make the env with render_mode='rgb_array'.")
    duration = max(20, round(1000 / fps))
    atomic_write(
        Path(path),
        lambda tmp: images[0].save(
            tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0
        ),
    )
    return Path(path)
