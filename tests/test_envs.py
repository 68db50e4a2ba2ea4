"""The action-diffusion wrapper and the LQ env: the checker, the box, physical units, errors."""

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from cqsm.rl.envs import ActionDiffusion, ActionDiffusionWrapper, EnvError, LinearQuadraticEnv, make


@pytest.mark.parametrize("boundary", ["reflect", "project", "squash"])
@pytest.mark.parametrize(
    "env_id", ["Pendulum-v1", "InvertedPendulum-v5", "cqsm/LinearQuadratic-v0"]
)
def test_wrapper_passes_gymnasium_checker(env_id, boundary):
    env = ActionDiffusionWrapper(make(env_id), boundary=boundary)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the checker's advice on wrappers and asymmetric boxes
        check_env(env, skip_render_check=True)
    assert env.observation_space.shape == (env.n + env.diffusion.d,)


@pytest.mark.parametrize("boundary", ["reflect", "project", "squash"])
def test_actions_stay_in_the_box(boundary):
    env = ActionDiffusionWrapper(make("HalfCheetah-v5"), sigma_a=5.0, boundary=boundary)
    low, high = env.unwrapped.action_space.low, env.unwrapped.action_space.high
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    seen = []
    for _ in range(300):
        psi = rng.choice([-1.0, 1.0], size=6) * env.rate_scale * 3  # beyond the rate cap
        obs, _, terminated, truncated, info = env.step(psi)
        applied = info["applied_action"]
        assert np.all(applied >= low) and np.all(applied <= high)
        assert np.all(np.abs(info["score"]) <= env.rate_scale)
        seen.append(applied)
    # the actions really move across the box (a squashed latent this fast saturates instead)
    assert np.ptp(np.array(seen), axis=0).min() > (0.0 if boundary == "squash" else 1.0)


def test_observation_is_latest_state_and_action_in_force():
    env = ActionDiffusionWrapper(make("Pendulum-v1"), sigma_a=0.0)
    obs, _ = env.reset(seed=3)
    assert obs[-1] == 0.0  # the action in force starts at the centre of the box
    obs, _, _, _, info = env.step(np.array([10.0]))
    assert info["applied_action"][0] == pytest.approx(10.0 * env.dt)
    assert obs[-1] == pytest.approx(info["applied_action"][0])


def test_reflection_and_squash_maps():
    box = ActionDiffusion(np.array([-1.0]), np.array([1.0]), dt=0.1, sigma_a=0.0)
    np.testing.assert_allclose(box.keep(np.array([1.3, -1.5, 0.2, 3.5])), [0.7, -0.5, 0.2, -0.5])
    squash = ActionDiffusion(
        np.array([0.0]), np.array([2.0]), dt=0.1, sigma_a=0.0, boundary="squash"
    )
    np.testing.assert_allclose(squash.applied(np.array([0.0, 50.0, -50.0])), [1.0, 2.0, 0.0])
    project = ActionDiffusion(
        np.array([-1.0]), np.array([1.0]), dt=0.1, sigma_a=0.0, boundary="project"
    )
    np.testing.assert_allclose(project.keep(np.array([1.3, -1.5, 0.2])), [1.0, -1.0, 0.2])


def test_reflected_and_projected_steps_reach_the_reflected_diffusion():
    """Both boundary schemes converge to the reflected diffusion, whose stationary law on
    [-1, 1] with drift psi is proportional to exp(2 psi a / sigma^2); at a coarse step with a
    strong drift the projected scheme holds the action at the face, the mirrored one does not."""
    psi, sigma_a, n = 3.0, 0.7, 20_000
    k = 2 * psi / sigma_a**2
    exact_mean = 1 / math.tanh(k) - 1 / k

    def mean_after_two_seconds(dt, boundary):
        process = ActionDiffusion(np.array([-1.0]), np.array([1.0]), dt, sigma_a, boundary)
        return process.run(np.zeros((n, 1)), psi, 2.0, np.random.default_rng(2)).mean()

    for boundary in ("reflect", "project"):  # the error shrinks with dt (projection: ~sqrt(dt))
        fine, finer = (
            abs(mean_after_two_seconds(dt, boundary) - exact_mean) for dt in (0.01, 0.001)
        )
        assert finer < 0.015 and finer < fine / 1.5
    coarse = {b: mean_after_two_seconds(0.05, b) for b in ("reflect", "project")}
    assert coarse["project"] > exact_mean > coarse["reflect"] + 0.05


@pytest.mark.parametrize("boundary", ["reflect", "project", "squash"])
def test_halving_the_control_interval_keeps_the_action_process(boundary):
    """Same physical sigma_a and score, dt = 0.05 s or 0.025 s: a after one second agrees."""
    n, psi, sigma_a = 40_000, 0.8, 0.7
    stats = []
    for dt in (0.05, 0.025):
        process = ActionDiffusion(np.array([-1.0]), np.array([1.0]), dt, sigma_a, boundary)
        a = process.run(np.zeros((n, 1)), psi, 1.0, np.random.default_rng(1))
        applied = process.applied(a)[:, 0]
        stats.append((applied.mean(), applied.var(), applied.std() / math.sqrt(n)))
    (m1, v1, se1), (m2, v2, se2) = stats
    assert abs(m1 - m2) < 4 * math.hypot(se1, se2)
    assert abs(v1 - v2) < 0.05 * v1
    assert m1 > 0.3  # the drift moved the action: the check is not trivially met at zero


def test_the_wrapper_takes_the_control_interval_of_the_env():
    base = ActionDiffusionWrapper(make("HalfCheetah-v5"))
    fine = ActionDiffusionWrapper(make("HalfCheetah-v5", control_interval=0.01))
    assert base.dt == pytest.approx(0.05) and fine.dt == pytest.approx(0.01)
    # a frame-skipped step's reward is a rate over the step; the native dt stays for beta
    assert fine.base_dt == pytest.approx(0.01) and fine.native_dt == base.native_dt == 0.05
    assert fine.rate_scale == base.rate_scale  # physical units do not change
    held = ActionDiffusionWrapper(make("Pendulum-v1", control_interval=0.1))
    # a repeated action sums native rewards, each a rate over the native step
    assert held.dt == pytest.approx(0.1) and held.base_dt == pytest.approx(0.05)


def test_clear_errors():
    with pytest.raises(EnvError, match="Box action space"):
        ActionDiffusionWrapper(gym.make("CartPole-v1"))
    with pytest.raises(EnvError, match="dt must be a positive"):
        ActionDiffusion(np.array([-1.0]), np.array([1.0]), dt=0.0, sigma_a=1.0)
    with pytest.raises(EnvError, match="sigma_a"):
        ActionDiffusion(np.array([-1.0]), np.array([1.0]), dt=0.1, sigma_a=-1.0)
    with pytest.raises(EnvError, match="Unknown boundary"):
        ActionDiffusionWrapper(make("Pendulum-v1"), boundary="clip")
    with pytest.raises(EnvError, match="Did you mean HalfCheetah-v5"):
        make("HalfCheetah-v55")
    env = ActionDiffusionWrapper(make("Pendulum-v1"))
    env.reset(seed=0)
    with pytest.raises(EnvError, match=r"shape \(1,\)"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="dt must be a positive"):
        LinearQuadraticEnv(dt=-0.1)
    with pytest.raises(ValueError, match="stationary"):
        LinearQuadraticEnv(problem="scalar")


def test_lq_env_step_and_objective():
    env = LinearQuadraticEnv(dt=0.01)
    p = env.problem
    x, _ = env.reset(seed=0)
    a = np.array([0.3])
    z = np.concatenate([x.astype(np.float64), a])
    _, reward, terminated, _, _ = env.step(a)
    assert reward == pytest.approx(-0.5 * z @ p.W @ z, rel=1e-6) and not terminated
    # The optimal gain's Monte-Carlo value agrees with the closed form (small dt), a worse one
    # is lower.
    wrapper = ActionDiffusionWrapper(env, sigma_a=float(p.sigma_a[0, 0]), rate_scale=1e6)
    K = p.optimal().gain(0.0)
    value, se = env.objective(lambda o: o @ K.T, wrapper.diffusion, n_paths=4000)
    assert abs(value - env.optimal_objective()) < 4 * se
    worse, _ = env.objective(lambda o: 0.3 * o @ K.T, wrapper.diffusion, n_paths=4000)
    assert worse < value - 5 * se


def test_make_routes_mujoco_notices_to_python_warnings(tmp_path, monkeypatch):
    import warnings

    import mujoco

    from cqsm.rl.envs import MujocoWarning, _mujoco_notices_as_warnings

    monkeypatch.chdir(tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make("HalfCheetah-v5")  # its XML triggers the known settotalmass notice
        with _mujoco_notices_as_warnings():
            mujoco.get_mju_user_warning()("another notice")  # as MuJoCo would call it
    assert [str(w.message) for w in caught if w.category is MujocoWarning] == ["another notice"]
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()  # no log file in the working folder
    assert mujoco.get_mju_user_warning() is None  # MuJoCo's own handler is back
