"""The simulator diagnostics: action statistics, snapshots, and the finite-difference check of
the critic's action gradient against the LQ closed form."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from cqsm.lq.problem import LQProblem
from cqsm.rl.agents.cqsm import CQSMAgent, CQSMSettings
from cqsm.rl.diagnostics import (
    _restore,
    _snapshot,
    action_predictability,
    action_statistics,
    critic_slices,
    gradient_check,
    warmup_states_and_actions,
)
from cqsm.rl.envs import LinearQuadraticEnv
from cqsm.rl.evaluation import evaluate
from cqsm.rl.train import TrainSettings, make_agent, make_env


def test_action_statistics_of_a_sine():
    dt, f = 0.01, 2.0
    t = np.arange(0, 5, dt)
    a = 0.5 * np.sin(2 * np.pi * f * t)[:, None]
    stats = action_statistics(a, np.array([-1.0]), np.array([1.0]), dt)
    assert stats["bandwidth_hz"] == pytest.approx(f, abs=0.2)
    assert stats["rate_rms"] == pytest.approx(2 * np.pi * f * 0.5 / np.sqrt(2), rel=0.01)
    assert stats["at_face"] == 0.0
    square = np.sign(np.sin(2 * np.pi * f * t + 0.1))[:, None]
    assert action_statistics(square, np.array([-1.0]), np.array([1.0]), dt)["at_face"] == 1.0


def test_a_mujoco_snapshot_replays_a_step_exactly():
    env = make_env(TrainSettings(algo="cqsm", env="HalfCheetah-v5"), explore=False)
    env.reset(seed=3)
    sim, a = env.unwrapped, np.full(6, 0.3, dtype=np.float32)
    for _ in range(5):
        sim.step(-a)
    snap = _snapshot(sim)
    first = sim.step(a)[:2]
    sim.step(-a)
    _restore(sim, snap)
    again = sim.step(a)[:2]
    np.testing.assert_array_equal(first[0], again[0])
    assert first[1] == again[1]


class _ExactQ(nn.Module):
    """``Q(x, a) = -1/2 z^T P z - c``, the closed form of a linear score, as twin critics."""

    def __init__(self, P: np.ndarray, c: float):
        super().__init__()
        self.P, self.c = torch.as_tensor(P, dtype=torch.float32), float(c)

    def first(self, x, a):
        z = torch.cat([x, a], -1)
        return -0.5 * ((z @ self.P) * z).sum(-1) - self.c

    def forward(self, x, a):
        return self.first(x, a), self.first(x, a)


def test_finite_differences_recover_the_closed_form_action_gradient():
    # The scalar discounted LQ problem without state noise (a deterministic simulator, as MuJoCo
    # is), its optimal linear score, and its exact Q as the critic: finite differences of
    # rollouts must give the closed form grad_a Q = -(P z)_a up to the Euler scheme's O(dt).
    problem = LQProblem(-0.5, 1.0, 0.0, 0.5, 1.0, 0.2, 0.1, None, 0.5, horizon=None, discount=0.5)
    settings = CQSMSettings(lam=0.5, sigma_a=0.5, beta=0.5, rate_scale=5.0)
    env = CQSMAgent.wrap(LinearQuadraticEnv(problem, dt=0.01), settings, explore=False)
    agent = CQSMAgent(
        settings, CQSMAgent.wrap(LinearQuadraticEnv(problem, dt=0.01), settings, True)
    )
    solution = problem.optimal()
    K = torch.as_tensor(solution.gain(), dtype=torch.float32)
    agent.score = lambda obs: obs @ K.T
    agent.critic = agent.critic_target = _ExactQ(solution.P(), solution.c())
    check = gradient_check(agent, env, n_states=4, seconds=1.0, h=0.05, n_noise=2)
    assert check["grad_cos"] > 0.999  # one action dimension: the signs agree
    assert check["grad_ratio"] == pytest.approx(1.0, abs=0.03)
    for state in check["states"]:
        exact = -(solution.P() @ np.concatenate([state["x"], state["a"]]))[problem.n :]
        np.testing.assert_allclose(state["critic"], exact, rtol=1e-4)
        np.testing.assert_allclose(state["fd"], exact, rtol=0.03)
    # a critic whose action gradient has the wrong sign is caught
    flipped = _ExactQ(solution.P() * np.array([[1.0, -1.0], [-1.0, -1.0]]), solution.c())
    agent.critic = flipped
    assert gradient_check(agent, env, n_states=4, seconds=1.0, n_noise=2)["grad_cos"] < -0.999


def test_diagnostics_leave_training_untouched_and_actions_are_the_applied_ones():
    settings = TrainSettings.for_task(
        "Hopper-v5", task_presets=False, agent={"actor": "feynman_kac"}
    )
    env = make_env(settings, explore=False)
    agent = make_agent(settings, make_env(settings, explore=True))
    torch.manual_seed(5)
    before = torch.get_rng_state()
    check = gradient_check(agent, env, n_states=2, seconds=0.05)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(np.isfinite(check[k]) for k in ("grad_cos", "grad_ratio", "grad_fd"))
    actions, frames = [], []
    evaluate(agent, env, 1, seed=0, frames=frames, actions=actions)
    observed = np.array([obs[agent.n :] for _, obs in frames[1:]])  # a_{k-1} in the next obs
    np.testing.assert_allclose(np.array(actions)[:-1], observed, atol=1e-6)
    low, high = env.unwrapped.action_space.low, env.unwrapped.action_space.high
    stats = action_statistics(np.array(actions), low, high, env.dt)
    assert 0 <= stats["at_face"] <= 1 and stats["rate_rms"] >= 0


class _Bowl(nn.Module):
    """``Q(x, a) = -|a - c|^2``: best action ``c`` whatever the state."""

    def __init__(self, c):
        super().__init__()
        self.c = torch.as_tensor(c, dtype=torch.float32)

    def first(self, x, a):
        return -((a - self.c) ** 2).sum(-1)


def test_critic_slices_find_the_best_action_and_what_one_move_reaches():
    settings = TrainSettings.for_task(
        "HalfCheetah-v5", task_presets=False, agent={"boundary": "project"}
    )
    agent = make_agent(settings, make_env(settings, explore=True))
    c = np.array([0.9, -0.9, 0.0, 0.5, -0.5, 1.0])
    agent.critic = _Bowl(c)
    agent.score = lambda obs: torch.zeros(len(obs), 6)  # holds the action: a_hat = a_prev
    a_prev = np.array([[-0.5] * 6, [0.0] * 6])
    obs = np.concatenate([np.zeros((2, agent.n)), a_prev], -1)
    rows = critic_slices(agent, obs, points=41)
    step = agent.rate_scale * agent.dt  # 1.0 on HalfCheetah
    for r in rows.itertuples():
        assert r.a_hat == pytest.approx(a_prev[r.state, r.dim])
        assert r.best == pytest.approx(c[r.dim], abs=0.026)
        reach = np.clip(c[r.dim], a_prev[r.state, r.dim] - step, a_prev[r.state, r.dim] + step)
        assert r.best_reachable == pytest.approx(reach, abs=0.051)


class _Drift(gym.Env):
    """``x' = x + a``, reward ``-|x|^2``: a deterministic env for agents acting in the box."""

    dt = 0.1

    def __init__(self):
        self.observation_space = gym.spaces.Box(-10.0, 10.0, (2,))
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,))
        self.x = np.zeros(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.x, self.k = self.np_random.uniform(-1, 1, 2), 0
        return self.x.astype(np.float32), {}

    def step(self, a):
        reward = -float(self.x @ self.x)
        self.x, self.k = self.x + np.asarray(a, dtype=np.float64), self.k + 1
        return self.x.astype(np.float32), reward, False, self.k >= 20, {}


class _QuadraticQ(nn.Module):
    """``Q(x, a) = -c |x + a|^2`` as twin critics."""

    def __init__(self, c):
        super().__init__()
        self.c = c

    def first(self, x, a):
        return -self.c * ((x + a) ** 2).sum(-1)

    def forward(self, x, a):
        return self.first(x, a), self.first(x, a)


class _HalfwayAgent:
    """An agent acting in the env's box: ``pi(x) = -x / 2`` (clipped), with given critics."""

    def __init__(self, critic, target, gamma):
        self.critic, self.critic_target = critic, target
        self.settings = type("S", (), {"gamma": gamma})()

    def act(self, obs, explore=True):
        return np.clip(-0.5 * np.asarray(obs), -1, 1)


def test_the_gradient_check_of_an_agent_acting_in_the_box():
    # One step: value(a) = -|x|^2 + gamma * Qbar(x + a, pi(x + a)), Qbar = -c|y + pi(y)|^2 with
    # y = x + a, so grad_a value = -2 gamma c (1/2)^2 (x + a) where pi is not clipped.
    gamma, c = 0.9, 2.0
    agent = _HalfwayAgent(_QuadraticQ(gamma * c / 4), _QuadraticQ(c), gamma)
    check = gradient_check(agent, _Drift(), n_states=4, seconds=0.1, h=0.01)
    assert check["grad_cos"] == pytest.approx(1.0, abs=1e-6)
    assert check["grad_ratio"] == pytest.approx(1.0, rel=1e-4)
    for state in check["states"]:
        exact = -2 * gamma * c * 0.25 * (state["x"] + state["a"])
        np.testing.assert_allclose(state["fd"], exact, rtol=1e-4, atol=1e-6)
    agent.critic = _QuadraticQ(-gamma * c / 4)  # the opposite slope is caught
    assert gradient_check(agent, _Drift(), n_states=4, seconds=0.1, h=0.01)["grad_cos"] < -0.999


def test_action_predictability_tells_independent_from_state_driven_actions():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4000, 5))
    independent = rng.uniform(-1, 1, (4000, 2))
    driven = x[:, :2] @ np.array([[1.0, 0.5], [-0.3, 2.0]]) + 0.1 * rng.normal(size=(4000, 2))
    assert abs(action_predictability(x, independent)) < 0.01
    assert action_predictability(x, driven) > 0.99
    with pytest.raises(ValueError, match="matching rows"):
        action_predictability(x, independent[:10])


def test_the_warmups_actions_and_how_predictable_they_are():
    # the score warm-up lets the action wander: its actions are partly predictable from the
    # state they meet; the action warm-up draws them afresh each step, as the baselines do
    settings = {"relaxation": 0.05, "boundary": "project"}
    r2 = {}
    for warmup in ("score", "action"):
        s = TrainSettings.for_task(
            "HalfCheetah-v5", task_presets=False, agent=settings | {"warmup": warmup}
        )
        x, a = warmup_states_and_actions(s, 1500, seed=1)
        assert x.shape == (1500, 17) and a.shape == (1500, 6) and np.abs(a).max() <= 1
        r2[warmup] = action_predictability(x, a)
    assert r2["action"] < 0.05 < 0.1 < r2["score"]
