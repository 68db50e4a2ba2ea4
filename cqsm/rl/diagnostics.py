"""What a CQSM agent does and what its critic believes, measured in the simulator.

Three kinds of numbers, from the evaluation env (no exploration noise in the episode itself):

- :func:`action_statistics` — how the applied action moves in an episode (any algorithm's; the
  ``actions`` of :func:`cqsm.rl.evaluation.evaluate`): the RMS rate ``|a_k - a_{k-1}| / dt``
  (action units per second), the fraction of coordinates at a face of the box, and the action's
  bandwidth (the frequency below which half of its power lies).
- :func:`gradient_check` — does the critic's action gradient ``grad_a Q_phi1(x, a)`` (what the
  score follows) agree with the simulator? At states of an evaluation episode it estimates
  ``grad_a Q`` by central finite differences of short rollouts: apply ``a +- h e_i``, follow the
  score for ``seconds`` with the action noise of training (the same noise for ``+h`` and ``-h``),
  charge the rate penalty, and close with the same bootstrap as the TD target. It reports the
  cosine between the two gradients and the ratio of their norms.
- :func:`critic_slices` — scans the critic along each action coordinate: does the score follow
  its critic, and where does the critic put the best action?

:func:`diagnose_run` summarises the last two for a finished run.

None of it touches torch's random generator or the training env.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import torch

from cqsm.rl.envs.action_diffusion import ActionDiffusionWrapper
from cqsm.rl.envs.interval import interval_of, repeat_step
from cqsm.rl.evaluation import EVAL_SEED_BASE
from cqsm.rl.rollout import Rollout, episode

__all__ = [
    "action_statistics",
    "gradient_check",
    "critic_slices",
    "diagnose_run",
    "warmup_states_and_actions",
    "action_predictability",
]


def action_statistics(applied: np.ndarray, low: np.ndarray, high: np.ndarray, dt: float) -> dict:
    """Rate, time at the faces and bandwidth of one episode's applied actions ``(steps, d)``.

    Returns ``rate_rms`` (action units per second), ``at_face`` (fraction of coordinates within 1%
    of the box width from a face) and ``bandwidth_hz`` (median over coordinates of the frequency
    below which half of the power of the centred action lies).
    """
    a = np.asarray(applied, dtype=np.float64)
    rate = np.diff(a, axis=0) / dt
    width = high - low
    near = (a - low <= 0.01 * width) | (high - a <= 0.01 * width)
    power = np.abs(np.fft.rfft(a - a.mean(0), axis=0)) ** 2
    freqs = np.fft.rfftfreq(len(a), dt)
    cumulative = np.cumsum(power[1:], axis=0)  # without the zero frequency (the mean is removed)
    half = cumulative >= 0.5 * cumulative[-1:].clip(min=1e-300)
    bandwidth = freqs[1:][np.argmax(half, axis=0)]
    return {
        "rate_rms": float(np.sqrt(np.mean(rate**2))) if len(rate) else 0.0,
        "at_face": float(near.mean()),
        "bandwidth_hz": float(np.median(bandwidth)),
    }


def _snapshot(sim):
    """The simulator's whole state (MuJoCo's integration state, or a copy of a plain env's)."""
    if hasattr(sim, "model") and hasattr(sim, "data"):
        import mujoco

        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        state = np.empty(mujoco.mj_stateSize(sim.model, spec))
        mujoco.mj_getState(sim.model, sim.data, state, spec)
        return ("mujoco", state)
    return ("copy", copy.deepcopy(sim.__dict__))


def _restore(sim, snapshot) -> None:
    kind, state = snapshot
    if kind == "mujoco":
        import mujoco

        mujoco.mj_setState(sim.model, sim.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(sim.model, sim.data)
    else:
        sim.__dict__.update(copy.deepcopy(state))


class _Probe:
    """Short rollouts from a simulator snapshot under an agent's noiseless policy, closed by the
    bootstrap of the agent's TD target.

    Two kinds of agent: CQSM (its env an :class:`~cqsm.rl.envs.ActionDiffusionWrapper`; the action
    is a state that the score moves, with the training noise and the rate penalty), and agents
    that act in the env's own box (TD3, SAC, ...; no noise: the next action is the noiseless
    policy's, and the bootstrap is ``min_j Qbar_j(x', pi(x'))``, without TD3's smoothing noise or
    SAC's entropy bonus).
    """

    def __init__(self, agent, env):
        self.agent, self.sim = agent, env.unwrapped
        self.diffusion = getattr(agent, "diffusion", None)
        interval = interval_of(env)
        self.repeat, self.dt = interval.repeat, interval.dt
        if isinstance(env, ActionDiffusionWrapper):
            space = self.diffusion.state_space()
        else:
            if not hasattr(agent.settings, "gamma"):
                raise ValueError(f"{type(agent).__name__} acting in the env's box needs a gamma.")
            space = env.action_space
        self.low, self.high = space.low.astype(np.float64), space.high.astype(np.float64)
        self.d = len(self.low)

    def observe(self, x: np.ndarray, a: np.ndarray) -> np.ndarray:
        """What the policy sees after applying ``a``: ``(x, a)`` for CQSM, ``x`` otherwise."""
        return np.concatenate([x, a]) if self.diffusion is not None else x

    def _step(self, a: np.ndarray):
        """Apply the action for one control step; returns ``(x, reward, terminated)``."""
        applied = (self.diffusion.applied(a) if self.diffusion is not None else a).astype(
            np.float32
        )
        x, total, terminated, _, _ = repeat_step(self.sim, applied, self.repeat)
        return np.asarray(x, dtype=np.float64).ravel(), total, terminated

    def _move(self, x: np.ndarray, a: np.ndarray, noise: np.ndarray):
        """The next action and the running cost charged for reaching it."""
        agent = self.agent
        policy = agent.act(self.observe(x, a), explore=False).astype(np.float64)
        if self.diffusion is None:
            return policy, 0.0
        return self.diffusion.move(a, policy, noise), 0.5 * agent.settings.lam * (
            float(policy @ policy) * self.dt
        )

    def value(self, snapshot, a: np.ndarray, noise: np.ndarray, env_seed: int) -> float:
        """Discounted return of applying ``a`` now and following the policy with the given
        action noise ``(steps, d)`` for ``steps - 1`` more moves, closed by the TD target's
        bootstrap. A stochastic env draws its own noise from ``env_seed`` (MuJoCo's dynamics
        have none)."""
        agent = self.agent
        if self.diffusion is not None:
            disc, unit = agent.discount, agent.base_dt  # rewards are rates
        else:
            disc, unit = agent.settings.gamma, 1.0
        _restore(self.sim, snapshot)
        self.sim.np_random = np.random.default_rng(env_seed)
        total, weight = 0.0, 1.0
        for k in range(len(noise)):
            x, reward, terminated = self._step(a)
            total += weight * reward * unit
            if terminated:
                return total
            weight *= disc
            a, cost = self._move(x, a, noise[k])
            total -= weight * cost
        with torch.no_grad():
            q = torch.min(*agent.critic_target(*_tensors(x, a)))
        return total + weight * float(q)


def _tensors(x: np.ndarray, a: np.ndarray):
    return (
        torch.as_tensor(x, dtype=torch.float32)[None],
        torch.as_tensor(a, dtype=torch.float32)[None],
    )


def _critic_gradient(agent, x: np.ndarray, a: np.ndarray) -> np.ndarray:
    xt, at = _tensors(x, a)
    at.requires_grad_(True)
    (grad,) = torch.autograd.grad(agent.critic.first(xt, at).sum(), at)
    return grad[0].double().numpy()


def _episode(probe: _Probe, env, seed: int, n_states: int) -> list:
    """``(snapshot, x_k, a_k)`` at ``n_states`` evenly spaced steps of one evaluation episode:
    the simulator before the step and the action applied there (for CQSM, the action the score
    moved to)."""
    agent, visited, before = probe.agent, [], []

    def act(obs):  # the simulator and the state just before the step
        x = obs[: agent.n] if probe.diffusion is not None else obs
        before.append((_snapshot(env.unwrapped), np.asarray(x, dtype=np.float64)))
        return agent.act(obs, explore=False)

    for move in episode(env, act, seed):
        if probe.diffusion is not None:
            a = env.get_wrapper_state()["a"].copy()
        else:
            a = np.asarray(move.action, dtype=np.float64)
        visited.append((*before[-1], a))
    at = np.linspace(0, len(visited), n_states + 2)[1:-1].astype(int)
    return [visited[k] for k in sorted(set(at))]


def _cosine(u: np.ndarray, v: np.ndarray) -> float:
    return float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-300))


def gradient_check(
    agent,
    env,
    n_states: int = 6,
    seconds: float = 0.5,
    h: float = 0.05,
    n_noise: int = 2,
    seed: int = 0,
) -> dict:
    """The critic's action gradient against finite differences of simulator rollouts.

    ``env`` is the agent's evaluation env: CQSM's :class:`~cqsm.rl.envs.ActionDiffusionWrapper`, or
    the plain env of an agent acting in the env's box with twin critics (TD3, SAC, QSM,
    Diffusion-QL; see :class:`_Probe` for what their bootstrap leaves out). The states are
    ``n_states`` evenly spaced steps of one evaluation episode; each gets ``4 d n_noise``
    rollouts of ``seconds`` (``n_noise`` antithetic pairs of CQSM's action noise, the same for
    ``+h`` and ``-h``; the other agents' rollouts have no noise, so they get one each), and a step
    past a face of the box is cut to the face. Returns ``grad_cos`` (mean cosine),
    ``grad_ratio`` (median of ``|critic| / |finite difference|``), ``grad_fd`` (mean
    finite-difference norm), and the per-state vectors (``states``).
    """
    probe = _Probe(agent, env)
    steps, d = max(1, round(seconds / probe.dt)), probe.d
    kept = _episode(probe, env, EVAL_SEED_BASE - 1 - seed, n_states)
    lo, hi = probe.low, probe.high
    rng = np.random.default_rng(seed)
    states = []
    for snapshot, x, a in kept:
        if probe.diffusion is None:
            draws = [(np.zeros((steps, d)), rng.integers(2**31))]
        else:
            draws = [(rng.standard_normal((steps, d)), rng.integers(2**31)) for _ in range(n_noise)]
            draws += [(-z, env_seed) for z, env_seed in draws]  # antithetic: less variance
        fd = np.zeros(d)
        for i in range(d):
            up, down = a.copy(), a.copy()
            up[i], down[i] = min(a[i] + h, hi[i]), max(a[i] - h, lo[i])
            diffs = [
                probe.value(snapshot, up, *draw) - probe.value(snapshot, down, *draw)
                for draw in draws
            ]
            fd[i] = float(np.mean(diffs)) / (up[i] - down[i])
        states.append({"x": x, "a": a, "fd": fd, "critic": _critic_gradient(agent, x, a)})
    fd_norm = np.array([np.linalg.norm(s["fd"]) for s in states])
    critic_norm = np.array([np.linalg.norm(s["critic"]) for s in states])
    return {
        "grad_cos": float(np.mean([_cosine(s["critic"], s["fd"]) for s in states])),
        "grad_ratio": float(np.median(critic_norm / np.maximum(fd_norm, 1e-300))),
        "grad_fd": float(fd_norm.mean()),
        "states": states,
    }


@torch.no_grad()
def critic_slices(agent, observations: np.ndarray, points: int = 41) -> pd.DataFrame:
    """Does the score follow its critic, and where does the critic put the best action?

    At each observation ``(x, a_prev)`` the score moves to ``a_hat``. Along each action
    coordinate ``i`` (the others held at ``a_hat``), ``Q_phi1(x, .)`` is scanned over a grid of
    the box; returns one row per (observation, coordinate) with ``a_hat``, the argmax over the
    whole box (``best``) and over what one move can reach from ``a_prev`` (``best_reachable``),
    and the range of ``Q`` along the slice.
    """
    n, diffusion = agent.n, agent.diffusion
    if diffusion.boundary == "squash":
        raise ValueError(
            "critic_slices scans the action box: it needs boundary 'reflect' or "
            "'project' (with 'squash' the critic sees the unbounded latent)."
        )
    obs = torch.as_tensor(np.asarray(observations), dtype=torch.float32)
    x, a_prev = obs[:, :n], obs[:, n:]
    a_hat = diffusion.mean_move(a_prev, agent.score(obs))
    lo, hi, _ = (torch.as_tensor(v, dtype=torch.float32) for v in diffusion._finite)
    step = agent.rate_scale * diffusion.dt
    rows = []
    for i in range(diffusion.d):
        grid = torch.linspace(float(lo[i]), float(hi[i]), points)
        actions = a_hat[:, None, :].repeat(1, points, 1)
        actions[:, :, i] = grid
        q = agent.critic.first(x[:, None, :].expand(-1, points, -1), actions)
        out_of_reach = (grid[None] < a_prev[:, i : i + 1] - step) | (
            grid[None] > a_prev[:, i : i + 1] + step
        )
        reachable = q.masked_fill(out_of_reach, -torch.inf)
        for k in range(len(obs)):
            rows.append(
                {
                    "state": k,
                    "dim": i,
                    "a_prev": float(a_prev[k, i]),
                    "a_hat": float(a_hat[k, i]),
                    "best": float(grid[q[k].argmax()]),
                    "best_reachable": float(grid[reachable[k].argmax()]),
                    "q_range": float(q[k].max() - q[k].min()),
                }
            )
    return pd.DataFrame(rows)


def diagnose_run(run_dir, n_states: int = 6, n_slices: int = 20) -> dict:
    """The critic diagnostics of a finished run (its last checkpoint, critics included):
    :func:`gradient_check`'s ``grad_cos``, ``grad_ratio`` and ``grad_fd`` at one control step,
    for any agent with twin critics; for CQSM also, from :func:`critic_slices`, ``lag`` (mean
    distance from the score's move to the critic's best reachable action along each
    coordinate), ``best_at_face`` (how often the critic's best action along a coordinate is at a
    face) and ``move_at_face`` (how often the score's move is)."""
    from cqsm.rl.evaluation import evaluate
    from cqsm.rl.runs import load_run

    settings, env, agent = load_run(run_dir, whole=True)
    one_step = getattr(env, "dt", None) or env.unwrapped.dt
    check = gradient_check(agent, env, n_states=n_states, seconds=one_step)
    out = {k: check[k] for k in ("grad_cos", "grad_ratio", "grad_fd")}
    if settings.algo != "cqsm":
        return out
    frames: list = []
    evaluate(agent, env, 1, settings.seed, frames=frames)
    observations = np.array([obs for _, obs in frames[:: max(1, len(frames) // n_slices)]])
    slices = critic_slices(agent, observations)
    return {
        "lag": float((slices.best_reachable - slices.a_hat).abs().mean()),
        "best_at_face": float((slices.best.abs() > 0.95).mean()),
        "move_at_face": float((slices.a_hat.abs() > 0.95).mean()),
    } | out


def warmup_states_and_actions(settings, steps: int, seed: int = 0):
    """The states ``x_k`` and the actions ``a_k`` applied in them during ``steps`` steps of a
    run's uniformly random warm-up (``settings``: a :class:`cqsm.rl.train.TrainSettings`), as the
    training loop draws them."""
    from cqsm.rl.train import Warmup, make_agent, make_env

    env = make_env(settings, explore=True)
    agent = make_agent(settings, env)
    env.action_space.seed(seed)
    rollout, xs, actions = Rollout(env, seed), [], []
    warmup = Warmup(agent, env, settings.warmup_hold_steps)
    for _ in range(steps):
        move = rollout.step(lambda obs: warmup(obs, rollout.episode_step))
        xs.append(move.obs[: agent.n] if hasattr(agent, "n") else move.obs)
        actions.append(move.info.get("applied_action", move.action))
    return np.array(xs, dtype=np.float64), np.array(actions, dtype=np.float64)


def action_predictability(x: np.ndarray, a: np.ndarray, holdout: float = 0.3) -> float:
    """How much of the actions in a replay the states they were taken in predict: the held-out
    ``R^2`` (pooled over coordinates) of a least-squares linear fit of ``a_k`` on ``x_k``.

    Near 0, the actions vary independently of the state, and a critic fitted to these
    transitions can tell the action's effect from the state's; near 1, every state comes with
    much the same action, and ``grad_a Q`` is left to extrapolation.
    """
    x, a = np.asarray(x, dtype=np.float64), np.asarray(a, dtype=np.float64)
    if len(x) != len(a) or len(x) < 10:
        raise ValueError(
            f"Need matching rows of states and actions (10 or more); got {len(x)} and {len(a)}."
        )
    cut = int(len(x) * (1 - holdout))
    design = np.hstack([x, np.ones((len(x), 1))])
    coef, *_ = np.linalg.lstsq(design[:cut], a[:cut], rcond=None)
    residual = a[cut:] - design[cut:] @ coef
    spread = a[cut:] - a[:cut].mean(0)
    return float(1 - (residual**2).sum() / max((spread**2).sum(), 1e-300))
