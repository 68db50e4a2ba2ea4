"""The baselines (TD3, SAC, Diffusion-QL, QSM) on the shared loop: determinism, exact resume, the
action box, QSM's conventions, Diffusion-QL's sampler, SAC's temperature, smoke runs."""

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
import torch
from test_train import rows_without_timing, tiny

from cqsm import cli
from cqsm.rl.agents import ALGOS, QSMAgent, QSMSettings, SACAgent, SACSettings
from cqsm.rl.agents.common import ActionBox, Mish
from cqsm.rl.agents.ddpm import DDPM, Denoiser, vp_betas
from cqsm.rl.envs import EnvError
from cqsm.rl.train import TrainSettings, make_agent, make_env, train

BASELINES = ["td3", "sac", "diffusion_ql", "qsm"]


def small(tmp_path, algo, **overrides):
    return tiny(tmp_path, algo=algo, **overrides)


@pytest.mark.parametrize("algo", BASELINES)
def test_same_seed_same_numbers_and_exact_extension(tmp_path, algo):
    whole = train(small(tmp_path / "whole", algo, total_steps=800))
    again = train(small(tmp_path / "again", algo, total_steps=800))
    pd.testing.assert_frame_equal(rows_without_timing(whole.rows), rows_without_timing(again.rows))
    other = train(small(tmp_path / "other", algo, total_steps=400, seed=1))
    assert not np.allclose(other.rows["eval_return"], whole.rows["eval_return"][:2])
    # a run stopped at 400 steps (between episodes) and extended gives the same rows
    train(small(tmp_path / "short", algo, total_steps=400))
    longer = train(small(tmp_path / "short", algo, total_steps=800, resume=True))
    pd.testing.assert_frame_equal(rows_without_timing(longer.rows), rows_without_timing(whole.rows))


@pytest.mark.parametrize("algo", ["sac", "diffusion_ql", "qsm"])
def test_evaluation_never_changes_training(tmp_path, algo):
    """Their evaluation actions are random draws: made on a generator of their own, seeded by
    the run's seed and the step, they leave training as it is, and the evaluation at a step is
    the same whatever the schedule."""
    runs = {
        every: train(small(tmp_path / f"every{every}", algo, total_steps=600, eval_every=every))
        for every in (100, 300)
    }
    often, rarely = runs[100], runs[300]
    shared = often.rows[often.rows["step"].isin(rarely.rows["step"])].reset_index(drop=True)
    assert list(shared["step"]) == [300, 600] and often.rows["critic_loss"].notna().sum() >= 4
    columns = ["step", "train_return", "episodes", "eval_return", "eval_return_std"]
    pd.testing.assert_frame_equal(shared[columns], rarely.rows[columns])
    for mine, theirs in zip(
        often.agent.critic.parameters(), rarely.agent.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)  # the same training, bit for bit


def rescaled_pendulum():
    """Pendulum with its torque box moved to [0.5, 3]: nothing may assume [-1, 1]."""
    low, high = np.array([0.5], np.float32), np.array([3.0], np.float32)
    return gym.wrappers.RescaleAction(gym.make("Pendulum-v1"), low, high)


@pytest.mark.parametrize("algo", BASELINES)
def test_actions_in_the_env_box_whatever_its_bounds(algo):
    env = rescaled_pendulum()
    cls = ALGOS[algo]
    agent = cls(cls.Settings(hidden=(16, 16)), env)
    torch.manual_seed(0)
    obs, _ = env.reset(seed=0)
    actions = np.array([agent.act(obs, explore=e) for e in (True, False) for _ in range(50)])
    assert actions.shape == (100, 1)
    assert (actions >= 0.5).all() and (actions <= 3.0).all()
    assert actions.std() > 0.01  # not stuck on a bound


@pytest.mark.parametrize("algo", BASELINES)
def test_a_non_box_action_space_is_refused(algo):
    cls = ALGOS[algo]
    with pytest.raises(EnvError, match="bounded Box action space"):
        cls(cls.Settings(), gym.make("CartPole-v1"))


def test_action_box_round_trip():
    box = ActionBox(gym.spaces.Box(np.float32([0, -3]), np.float32([1, 5])), "test")
    a = torch.tensor([[0.25, 4.0]])
    torch.testing.assert_close(box.to_env(box.to_unit(a)), a)
    torch.testing.assert_close(box.to_env(torch.tensor([[-1.0, 1.0]])), torch.tensor([[0.0, 5.0]]))


def test_ddpm_schedule_and_sampler_shapes():
    betas = vp_betas(5)
    assert betas.shape == (5,) and (betas > 0).all() and (betas < 1).all()
    assert (betas[1:] > betas[:-1]).all()  # more noise per step as t grows
    ddpm = DDPM(5, 2)
    assert ddpm.abar[-1] < 0.01  # u_T is nearly pure noise
    denoiser = Denoiser(3, 2, (16, 16))
    torch.manual_seed(0)
    u = ddpm.sample(denoiser, torch.randn(64, 3))
    assert u.shape == (64, 2) and u.abs().max() <= 1
    # the posterior step reproduces u_0 when the denoiser predicts the true noise
    u0, eps = torch.rand(8, 2) * 2 - 1, torch.randn(8, 2)
    t = torch.full((8,), 4)
    u_t = ddpm.noise(u0, t, eps)
    recon = (u_t - (1 - ddpm.abar[4]).sqrt() * eps) / ddpm.abar[4].sqrt()
    torch.testing.assert_close(recon, u0)


def test_diffusion_ql_samples_in_bounds_with_the_right_shape():
    env = gym.make("HalfCheetah-v5")
    cls = ALGOS["diffusion_ql"]
    agent = cls(cls.Settings(hidden=(32, 32)), env)
    obs, _ = env.reset(seed=0)
    for explore in (True, False):
        a = agent.act(obs, explore=explore)
        assert a.shape == env.action_space.shape and env.action_space.contains(a.astype(np.float32))
    u = agent.ddpm.sample(agent.actor, torch.randn(256, 17))
    assert u.shape == (256, 6) and u.abs().max() <= 1


class Quadratic(torch.nn.Module):
    """Twin critics both equal to ``Q(x, a) = -|a - a_star|^2`` (best action a_star)."""

    def __init__(self, a_star):
        super().__init__()
        self.a_star = a_star

    def forward(self, x, a):
        q = -(a - self.a_star).square().sum(-1)
        return q, q


def qsm_with_quadratic_critic(a_star, M_q=2.0):
    env = rescaled_pendulum()
    agent = QSMAgent(QSMSettings(M_q=M_q, hidden=(16, 16)), env)
    agent.critic = Quadratic(torch.tensor([a_star]))
    return agent


def test_qsm_gradient_is_in_unit_box_coordinates_and_points_up_q():
    agent = qsm_with_quadratic_critic(2.5)
    x, u = torch.zeros(3, 3), torch.tensor([[-0.5], [0.0], [0.9]])
    grad = agent.grad_q(x, u)
    h = 1e-3
    q = lambda v: agent.critic(x, agent.box.to_env(v))[0]  # noqa: E731
    finite = (q(u + h) - q(u - h)) / (2 * h)
    torch.testing.assert_close(grad[:, 0], finite, rtol=1e-3, atol=1e-3)
    # a = 2.5 is u = 0.6 in the unit box: the gradient points toward it
    assert torch.equal(torch.sign(grad[:, 0]), torch.tensor([1.0, 1.0, -1.0]))


def test_qsm_matches_minus_eps_to_the_gradient_at_the_noisy_action(monkeypatch):
    """The loss is zero for eps(x, u_t, t) = -M_q grad Q(u_t), and not for the clean action's."""
    agent = qsm_with_quadratic_critic(2.5, M_q=2.0)
    u0 = torch.rand(128, 1) * 2 - 1
    x = torch.zeros(128, 3)

    def at_noisy(x, u_t, t):
        return -agent.settings.M_q * agent.grad_q(x, u_t)

    def at_clean(x, u_t, t):
        return -agent.settings.M_q * agent.grad_q(x, u0)

    for denoiser, zero in ((at_noisy, True), (at_clean, False)):
        monkeypatch.setattr(agent, "actor", denoiser)
        torch.manual_seed(0)
        loss = agent.score_loss(x, u0).item()
        assert (loss < 1e-10) is zero, loss


def test_sampling_with_minus_eps_along_the_gradient_climbs_q():
    """The sign convention end to end: a sampler whose eps is -c grad Q ends nearer a_star."""
    agent = qsm_with_quadratic_critic(2.5)
    x = torch.zeros(2000, 3)

    def mean_q(denoiser):
        torch.manual_seed(0)
        a = agent.box.to_env(agent.ddpm.sample(denoiser, x))
        return agent.critic(x, a)[0].mean().item()

    up = mean_q(lambda x, u, t: -3.0 * agent.grad_q(x, u))
    neutral = mean_q(lambda x, u, t: torch.zeros_like(u))
    down = mean_q(lambda x, u, t: 3.0 * agent.grad_q(x, u))
    assert up > neutral + 0.2 > down + 0.4, (up, neutral, down)


@pytest.mark.parametrize("target_entropy, direction", [(5.0, 1), (-50.0, -1)])
def test_sac_temperature_moves_toward_its_target(target_entropy, direction):
    env = gym.make("Pendulum-v1")
    agent = SACAgent(SACSettings(hidden=(32, 32), target_entropy=target_entropy), env)
    torch.manual_seed(0)
    batch = {
        "obs": torch.randn(64, 3),
        "action": torch.rand(64, 1) * 4 - 2,
        "reward": torch.randn(64),
        "next_obs": torch.randn(64, 3),
        "terminated": torch.zeros(64),
    }
    alphas = [agent.update(batch)["alpha"] for _ in range(40)]
    assert np.sign(alphas[-1] - 1.0) == direction
    assert np.all(np.sign(np.diff(alphas)[0::2]) == direction)  # every actor step moves it


def test_train_cli_offers_each_algorithm_settings(tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--algo", "sac", "--help"])
    assert "--target-entropy" in capsys.readouterr().out
    code = cli.main(
        ["train", "--algo", "qsm", "--env", "Pendulum-v1", "--M-q", "0", "--out", str(tmp_path)]
    )
    assert code == 1
    assert "QSMSettings.M_q must be a positive number" in capsys.readouterr().err


def test_published_loop_defaults_and_task_overrides():
    assert TrainSettings.for_task("Walker2d-v5", algo="td3").learning_starts == 1_000
    assert TrainSettings.for_task("Walker2d-v5", algo="td3").batch_size == 100
    assert TrainSettings.for_task("Walker2d-v5", algo="sac").batch_size == 256
    assert TrainSettings.for_task("HalfCheetah-v5", algo="td3").learning_starts == 10_000
    assert TrainSettings.for_task("Hopper-v5", algo="td3").learning_starts == 1_000
    assert TrainSettings.for_task("Hopper-v5", algo="sac").learning_starts == 5_000
    assert TrainSettings.for_task("Hopper-v5", algo="qsm").learning_starts == 10_000
    assert TrainSettings.for_task("Pendulum-v1", algo="td3").learning_starts == 1_000
    assert TrainSettings.for_task("Hopper-v5", algo="td3", learning_starts=7).learning_starts == 7


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5", "Ant-v5"])
@pytest.mark.parametrize("algo", BASELINES)
def test_smoke_mujoco(tmp_path, algo, env_id):
    settings = small(
        tmp_path, algo, env=env_id, total_steps=200, learning_starts=100, eval_every=200, n_eval=1
    )
    result = train(settings)
    assert np.isfinite(result.rows[["eval_return", "critic_loss", "q"]].to_numpy()).all()
    env = make_env(settings, explore=False)
    assert make_agent(settings, env).box.d == env.action_space.shape[0]


@pytest.mark.parametrize("algo", BASELINES)
def test_a_saved_policy_acts_as_the_trained_agent(tmp_path, algo):
    from cqsm.rl.runs import load_run

    result = train(small(tmp_path, algo, total_steps=200, learning_starts=100, eval_every=200))
    _, env, agent = load_run(result.run_dir)
    obs, _ = env.reset(seed=0)
    torch.manual_seed(3)
    mine = agent.act(obs, explore=False)
    torch.manual_seed(3)
    np.testing.assert_array_equal(mine, result.agent.act(obs, explore=False))


def test_mish_is_torch_mish_to_float32_rounding():
    """The diffusion baselines' activation: the same function and gradient as nn.Mish, with
    and without autograd, and past where exp(x) overflows float32."""
    x = torch.linspace(-120, 120, 48_001, dtype=torch.float32, requires_grad=True)
    ours, reference = Mish()(x), torch.nn.Mish()(x)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(Mish()(x), ours, rtol=0, atol=0)  # the same numbers
    grad = torch.autograd.grad(ours.sum(), x)[0]
    torch.testing.assert_close(
        grad, torch.autograd.grad(reference.sum(), x)[0], rtol=1e-5, atol=1e-5
    )


def test_mish_gradient_is_the_finite_difference_and_goes_one_order_only():
    x = torch.linspace(-30, 30, 601, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(Mish(), (x,))
    (grad,) = torch.autograd.grad(Mish()(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="does not require grad"):
        grad.sum().backward()
