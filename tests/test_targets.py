"""The targets the agents learn from, each against a hand computation on a tiny batch.

The random numbers are written out here (``torch.randn_like`` returns them), and the networks a
target reads are replaced by linear maps with the weights written out too, so that every number
below is computed by hand, not by calling the agent's own helpers: TD3's target (smoothing
noise clipped, clipped double-Q, delayed actor and target updates), SAC's (the entropy term and
the temperature's step toward its target entropy) and CQSM's (the next action re-sampled from
the current score, reflected at the box, the rate penalty charged at the move).
"""

import copy
import math
from dataclasses import replace

import gymnasium as gym
import pytest
import torch
from torch import nn

from cqsm.rl.agents import CQSMAgent, CQSMSettings, SACAgent, SACSettings, TD3Agent, TD3Settings
from cqsm.rl.agents import sac as sac_module
from cqsm.rl.agents import td3 as td3_module
from cqsm.rl.envs import ActionDiffusionWrapper, make
from cqsm.settings import SettingsError

# Pendulum-v1: x in R^3, torque in [-2, 2] (half width 2), 0.05 s per step.
X = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, -1.0], [0.6, -0.8, 2.0]])
X_NEXT = torch.tensor([[0.8, 0.6, 1.0], [-0.6, 0.8, -2.0], [1.0, 0.0, 0.0]])
ACTION = torch.tensor([[0.5], [-1.5], [1.0]])
REWARD = torch.tensor([-1.0, -0.5, -2.0])
TERMINATED = torch.tensor([0.0, 1.0, 0.0])
EPS = torch.tensor([[2.0], [-0.5], [-3.0]])  # the standard normal draws


def linear(weights, bias=0.0) -> nn.Linear:
    """A linear map ``y = weights . z + bias`` (one output per row of ``weights``)."""
    weights = torch.as_tensor(weights, dtype=torch.float32)
    layer = nn.Linear(weights.shape[1], weights.shape[0])
    with torch.no_grad():
        layer.weight.copy_(weights)
        layer.bias.fill_(bias)
    return layer


def hand_critics(n: int):
    """Twin critics ``Q_1 = sum(x) + a``, ``Q_2 = sum(x) - a``: their minimum is
    ``sum(x) - |a|``, so a target that takes the first (or the mean) critic is caught."""
    twin = nn.Module()
    twin.q1, twin.q2 = linear([[1.0] * n + [1.0]]), linear([[1.0] * n + [-1.0]])
    twin.forward = lambda x, a: tuple(
        q(torch.cat([x, a], -1)).squeeze(-1) for q in (twin.q1, twin.q2)
    )
    return twin


class Captured(Exception):
    """Raised by the spy on ``fit_critic`` once it has seen the TD target."""


def target_of(module, agent, batch, monkeypatch) -> torch.Tensor:
    """The TD target an agent's update regresses its critics on."""

    def spy(critic, optimizer, x, a, target, **kwargs):
        raise Captured(target)

    monkeypatch.setattr(module, "fit_critic", spy)
    with pytest.raises(Captured) as caught:
        agent.update(batch)
    return caught.value.args[0]


def transitions():
    """The batch's rows as plain numbers: ``(x', eps, r, terminated)``."""
    columns = (X_NEXT.tolist(), EPS[:, 0].tolist(), REWARD.tolist(), TERMINATED.tolist())
    return zip(*columns, strict=True)


def batch():
    return {
        "obs": X,
        "action": ACTION,
        "reward": REWARD,
        "next_obs": X_NEXT,
        "terminated": TERMINATED,
    }


def test_td3_target_smoothing_is_clipped_and_takes_the_smaller_critic(monkeypatch):
    agent = TD3Agent(
        TD3Settings(hidden=(8,), policy_noise=0.4, noise_clip=0.5), gym.make("Pendulum-v1")
    )
    agent.actor_target = linear([[0.5, -1.0, 0.25]])  # mu'(x') = 2 tanh(0.5 x1 - x2 + 0.25 x3)
    agent.critic_target = hand_critics(3)
    monkeypatch.setattr(torch, "randn_like", lambda t: EPS.clone())
    target = target_of(td3_module, agent, batch(), monkeypatch)

    expected = []
    for x, eps, r, done in transitions():
        mu = 2 * math.tanh(0.5 * x[0] - 1.0 * x[1] + 0.25 * x[2])
        noise = min(max(0.4 * eps, -0.5), 0.5)  # 0.8 -> 0.5, -0.2, -1.2 -> -0.5
        a = min(max(mu + 2 * noise, -2.0), 2.0)  # noise in half widths, then the box
        q = min(sum(x) + a, sum(x) - a)  # clipped double-Q
        expected.append(r + 0.99 * (1 - done) * q)
    torch.testing.assert_close(target, torch.tensor(expected))


def test_td3_delays_the_actor_and_the_targets():
    agent = TD3Agent(TD3Settings(hidden=(8,), policy_delay=2), gym.make("Pendulum-v1"))

    def snapshot(net):
        return [p.detach().clone() for p in net.parameters()]

    actor, actor_target, critic_target = map(
        snapshot, (agent.actor, agent.actor_target, agent.critic_target)
    )
    info = agent.update(batch())  # the first critic update: no actor step, no target move
    assert "actor_loss" not in info
    for before, net in [(actor, agent.actor), (actor_target, agent.actor_target)]:
        assert all(torch.equal(b, p) for b, p in zip(before, net.parameters(), strict=True))
    assert all(
        torch.equal(b, p)
        for b, p in zip(critic_target, agent.critic_target.parameters(), strict=True)
    )
    critic = snapshot(agent.critic)  # after its first step
    info = agent.update(batch())  # the second: the actor steps, and the targets move by tau
    assert "actor_loss" in info
    assert not all(torch.equal(b, p) for b, p in zip(actor, agent.actor.parameters(), strict=True))
    assert not all(
        torch.equal(b, p) for b, p in zip(critic, agent.critic.parameters(), strict=True)
    )
    for old, now_critic, now_target in zip(
        critic_target, agent.critic.parameters(), agent.critic_target.parameters(), strict=True
    ):  # Polyak toward the critic after its second step
        torch.testing.assert_close(now_target, 0.995 * old + 0.005 * now_critic.detach())


def gaussian_tanh(mean, raw_log_std, eps):
    """SAC's squashed Gaussian on [-2, 2] by hand: the action and its log-density."""
    log_std = -5.0 + 0.5 * 7.0 * (math.tanh(raw_log_std) + 1)
    z = mean + math.exp(log_std) * eps
    u = math.tanh(z)
    log_normal = -0.5 * (eps**2 + 2 * log_std + math.log(2 * math.pi))
    return 2 * u, log_normal - math.log(2 * (1 - u * u) + 1e-6)


def test_sac_target_has_the_entropy_term(monkeypatch):
    agent = SACAgent(SACSettings(hidden=(8,), alpha=0.5), gym.make("Pendulum-v1"))
    # the policy's mean and raw log-std, each linear in x'
    agent.actor = linear([[0.3, -0.2, 0.1], [0.5, 0.5, -0.25]])
    agent.critic_target = hand_critics(3)
    monkeypatch.setattr(torch, "randn_like", lambda t: EPS.clone())
    target = target_of(sac_module, agent, batch(), monkeypatch)

    expected = []
    for x, eps, r, done in transitions():
        mean = 0.3 * x[0] - 0.2 * x[1] + 0.1 * x[2]
        a, log_pi = gaussian_tanh(mean, 0.5 * x[0] + 0.5 * x[1] - 0.25 * x[2], eps)
        soft = min(sum(x) + a, sum(x) - a) - 0.5 * log_pi  # alpha = 0.5
        expected.append(r + 0.99 * (1 - done) * soft)
    torch.testing.assert_close(target, torch.tensor(expected))


def test_sac_temperature_steps_toward_the_target_entropy(monkeypatch):
    for target_entropy, direction in [(5.0, +1), (-5.0, -1)]:  # far above / below the entropy
        # fixed weights: float32 and float64 part ways where the squashed action saturates
        torch.manual_seed(0)
        agent = SACAgent(
            SACSettings(hidden=(8,), alpha=0.5, policy_delay=1, target_entropy=target_entropy),
            gym.make("Pendulum-v1"),
        )
        monkeypatch.setattr(torch, "randn_like", lambda t: EPS.clone())
        with torch.no_grad():  # the policy's log-density at the actor step, before it
            mean, raw = agent.actor(X).chunk(2, -1)
        log_pi = [
            gaussian_tanh(m, s, e)[1]
            for m, s, e in zip(
                mean[:, 0].tolist(), raw[:, 0].tolist(), EPS[:, 0].tolist(), strict=True
            )
        ]
        gap = sum(-lp - target_entropy for lp in log_pi) / 3  # entropy minus its target
        assert math.copysign(1, -gap) == direction
        before = agent.log_alpha.item()
        info = agent.update(batch())
        # Adam's first step on log alpha: lr times the sign of its gradient alpha * gap
        assert agent.log_alpha.item() - before == pytest.approx(direction * 1e-3, rel=1e-4)
        assert info["alpha"] == pytest.approx(0.5 * math.exp(direction * 1e-3), rel=1e-6)
        assert info["entropy"] == pytest.approx(-sum(log_pi) / 3, rel=1e-5)


def test_cqsm_target_resamples_the_next_action_and_charges_the_move(monkeypatch):
    settings = CQSMSettings(hidden=(8,), lam=0.02, sigma_a=0.5, beta=1.0)
    env = ActionDiffusionWrapper(make("Pendulum-v1"), sigma_a=0.5)
    agent = CQSMAgent(settings, env)
    agent.score_net = linear([[0.5, -1.0, 0.25, 2.0]])  # Psi = 40 tanh(w . (x', a_k))
    agent.critic_target = hand_critics(3)
    a_k = torch.tensor([[1.9], [-0.5], [0.0]])  # the action applied at x_k: next_obs = (x', a_k)
    monkeypatch.setattr(torch, "randn_like", lambda t: EPS.clone())
    cqsm_batch = batch() | {
        "obs": torch.cat([X, ACTION], -1),
        "next_obs": torch.cat([X_NEXT, a_k], -1),
    }
    target = agent.td_target(cqsm_batch)

    dt, expected, crossed = 0.05, [], []
    for a, (x, eps, r, done) in zip(a_k[:, 0].tolist(), transitions(), strict=True):
        psi = 40.0 * math.tanh(0.5 * x[0] - 1.0 * x[1] + 0.25 * x[2] + 2.0 * a)  # current score
        moved = a + psi * dt + 0.5 * math.sqrt(dt) * eps
        crossed.append(abs(moved) > 2.0)
        if moved > 2.0:  # mirrored at the face it crossed
            moved = 4.0 - moved
        elif moved < -2.0:
            moved = -4.0 - moved
        q = min(sum(x) + moved, sum(x) - moved)
        future = q - 0.5 * 0.02 * psi**2 * dt  # the rate penalty of the move it makes
        expected.append(r * dt + (1 - done) * math.exp(-1.0 * dt) * future)
    assert any(crossed) and not all(crossed)  # the reflection is part of what is checked
    torch.testing.assert_close(target, torch.tensor(expected))


@pytest.mark.parametrize("interval, std", [(None, 0.3), (0.05, 0.3), (0.2, 0.15)])
def test_cqsm_target_smoothing_is_per_square_root_second_at_its_interval(
    interval, std, monkeypatch
):
    """Target smoothing of 0.3 at 0.05 s per step: 0.3 itself without an interval or at its
    own, 0.3 sqrt(0.05 / 0.2) = 0.15 when 0.3 is the smoothing at 0.2 s; clipped at 2.5
    standard deviations, then reflected at the box like the move."""
    settings = CQSMSettings(
        hidden=(8,),
        lam=0.02,
        sigma_a=0.5,
        beta=1.0,
        target_noise=0.3,
        target_noise_interval=interval,
    )
    env = ActionDiffusionWrapper(make("Pendulum-v1"), sigma_a=0.5)
    agent = CQSMAgent(settings, env)
    assert agent.target_noise == pytest.approx(std, rel=1e-12)
    agent.score_net = linear([[0.5, -1.0, 0.25, 2.0]])  # Psi = 40 tanh(w . (x', a_k))
    agent.critic_target = hand_critics(3)
    a_k = torch.tensor([[1.9], [-0.5], [0.0]])
    monkeypatch.setattr(torch, "randn_like", lambda t: EPS.clone())  # both draws: EPS
    cqsm_batch = batch() | {
        "obs": torch.cat([X, ACTION], -1),
        "next_obs": torch.cat([X_NEXT, a_k], -1),
    }
    target = agent.td_target(cqsm_batch)

    def reflect(a):
        return 4.0 - a if a > 2.0 else (-4.0 - a if a < -2.0 else a)

    dt, expected, clipped = 0.05, [], []
    for a, (x, eps, r, done) in zip(a_k[:, 0].tolist(), transitions(), strict=True):
        psi = 40.0 * math.tanh(0.5 * x[0] - 1.0 * x[1] + 0.25 * x[2] + 2.0 * a)
        moved = reflect(a + psi * dt + 0.5 * math.sqrt(dt) * eps)
        clipped.append(abs(eps) > 2.5)
        smoothing = max(-2.5 * std, min(2.5 * std, std * eps))
        smoothed = reflect(moved + smoothing)
        future = min(sum(x) + smoothed, sum(x) - smoothed) - 0.5 * 0.02 * psi**2 * dt
        expected.append(r * dt + (1 - done) * math.exp(-1.0 * dt) * future)
    assert any(clipped) and not all(clipped)  # the clip is part of what is checked
    torch.testing.assert_close(target, torch.tensor(expected))
    with pytest.raises(SettingsError, match="target_noise_interval"):
        CQSMSettings(target_noise_interval=-1.0)


@pytest.mark.parametrize(
    "step, rho_dt, rho_t",
    [("exact", math.exp(-0.5), math.exp(-2.0)), ("euler", 0.8, 0.2)],
)
def test_target_smoothing_along_a_relaxation_compounds_the_same_at_every_interval(
    step, rho_dt, rho_t
):
    """At 0.05 s per step, a relaxation of 0.1 s (exact) or 0.25 s (Euler): each step's
    smoothing sd^2 accumulates to sd^2 / (1 - rho^2); the smoothing at 0.05 s is set so that
    this equals that of 0.3 at 0.2 s."""
    relaxation = 0.1 if step == "exact" else 0.25
    settings = CQSMSettings(
        hidden=(8,),
        target_noise=0.3,
        target_noise_interval=0.2,
        relaxation=relaxation,
        relaxation_step=step,
        warmup="action",
    )
    env = CQSMAgent.wrap(make("Pendulum-v1"), settings, explore=True)
    sd = CQSMAgent(settings, env).target_noise
    assert sd**2 / (1 - rho_dt**2) == pytest.approx(0.3**2 / (1 - rho_t**2), rel=1e-12)
    same = replace(settings, target_noise_interval=0.05)  # its own interval: 0.3 itself
    assert CQSMAgent(same, env).target_noise == pytest.approx(0.3, rel=1e-12)
    if step == "euler":  # an Euler relaxation of 0.25 s does not contract over 0.5 s
        with pytest.raises(SettingsError, match="does not contract"):
            CQSMAgent(replace(settings, target_noise_interval=0.5), env)


def test_cqsm_target_over_a_bootstrap_span_follows_the_replayed_steps(monkeypatch):
    """Three replayed steps of 0.05 s (a span of 0.15 s): the first row's span is whole; the
    second's ends after two steps, at a termination; the third's after one (a new episode).
    The states after the first are priced by the current score, not by the replayed one."""
    settings = CQSMSettings(hidden=(8,), lam=0.02, sigma_a=0.5, beta=1.0, bootstrap_span=0.15)
    env = ActionDiffusionWrapper(make("Pendulum-v1"), sigma_a=0.5)
    agent = CQSMAgent(settings, env)
    assert agent.span_steps == 3
    w = [0.5, -1.0, 0.25, 2.0]
    agent.score_net = linear([w])  # Psi = 40 tanh(w . (x, a))
    agent.critic_target = hand_critics(3)
    a_end = torch.tensor([[0.3], [-0.5], [0.0]])  # the last applied action of each span
    rewards = torch.tensor([[-1.0, -0.5, -2.0], [-0.25, 1.0, 0.0], [-1.5, 0.0, 0.0]])
    states = torch.tensor(  # (x, a_prev) of steps 2 and 3, zero past the span
        [
            [[0.2, -0.4, 1.0, 0.5], [1.0, 0.0, -0.5, -1.0]],
            [[-0.3, 0.9, 0.1, 0.2], [0.0, 0.0, 0.0, 0.0]],
            [[0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]],
        ]
    )
    monkeypatch.setattr(torch, "randn_like", lambda t: EPS.clone())
    spans = batch() | {
        "span": torch.tensor([3, 2, 1]),
        "span_reward": rewards,
        "span_obs": states,
        "span_next_obs": torch.cat([X_NEXT, a_end], -1),
        "span_terminated": torch.tensor([0.0, 1.0, 0.0]),
    }
    target = agent.td_target(spans)

    def score(z):
        return 40.0 * math.tanh(sum(wi * zi for wi, zi in zip(w, z, strict=True)))

    dt, gamma, expected = 0.05, math.exp(-1.0 * 0.05), []
    for row, (x, eps, _, _) in enumerate(transitions()):
        a = a_end[row, 0].item()
        psi = score([*x, a])
        moved = a + psi * dt + 0.5 * math.sqrt(dt) * eps
        moved = 4.0 - moved if moved > 2.0 else (-4.0 - moved if moved < -2.0 else moved)
        future = min(sum(x) + moved, sum(x) - moved) - 0.5 * 0.02 * psi**2 * dt
        m = int(spans["span"][row])
        running = sum(gamma**j * rewards[row, j].item() * dt for j in range(m))
        running -= sum(
            gamma**j * 0.5 * 0.02 * score(states[row, j - 1].tolist()) ** 2 * dt
            for j in range(1, m)
        )
        alive = 1 - spans["span_terminated"][row].item()
        expected.append(running + alive * gamma**m * future)
    torch.testing.assert_close(target, torch.tensor(expected))


@pytest.mark.parametrize("span, steps", [(None, 1), (0.01, 1), (0.05, 1), (0.12, 2), (0.2, 4)])
def test_a_bootstrap_span_is_a_whole_number_of_control_steps(span, steps):
    env = ActionDiffusionWrapper(make("Pendulum-v1"), sigma_a=0.5)  # 0.05 s per step
    agent = CQSMAgent(CQSMSettings(hidden=(8,), bootstrap_span=span), env)
    assert agent.span_steps == steps


def assert_polyak(before, target, source, rate):
    """Each parameter of ``target`` moved from ``before``'s toward ``source``'s by ``rate``."""
    pairs = zip(before.parameters(), target.parameters(), source.parameters(), strict=True)
    for old, new, now in pairs:
        torch.testing.assert_close(new, torch.lerp(old, now, rate))


@pytest.mark.parametrize("tau_interval, rate", [(None, 0.005), (0.05, 0.005), (0.25, 0.025)])
def test_the_target_critics_rate_is_tau_per_tau_interval_seconds(tau_interval, rate):
    """At 0.05 s per step: tau itself at its own interval (exactly), five times tau per update
    for tau at 0.25 s; the critics' targets move by that rate, the score's target by tau."""
    env = ActionDiffusionWrapper(make("Pendulum-v1"), sigma_a=0.5)
    settings = CQSMSettings(hidden=(8,), tau_interval=tau_interval, target_score=True)
    agent = CQSMAgent(settings, env)
    assert agent.critic_tau == pytest.approx(rate, rel=1e-12)
    critic, score = copy.deepcopy(agent.critic_target), copy.deepcopy(agent.score_target)
    a_k = torch.tensor([[1.9], [-0.5], [0.0]])
    obs = {"obs": torch.cat([X, ACTION], -1), "next_obs": torch.cat([X_NEXT, a_k], -1)}
    agent.update(batch() | obs)
    assert_polyak(critic, agent.critic_target, agent.critic, rate)
    assert_polyak(score, agent.score_target, agent.score_net, 0.005)
    with pytest.raises(SettingsError, match="tau_interval"):
        CQSMSettings(tau_interval=0.0)
    assert CQSMAgent(CQSMSettings(tau_interval=10.0, tau=0.5), env).critic_tau == 1.0


def test_td3s_target_critics_move_tau_per_tau_interval_seconds_and_its_actor_tau():
    env = make("Pendulum-v1")  # 0.05 s per step
    agent = TD3Agent(TD3Settings(hidden=(8,), tau_interval=0.25, policy_delay=1), env)
    assert agent.critic_tau == pytest.approx(0.025, rel=1e-12)
    assert TD3Agent(TD3Settings(hidden=(8,), tau_interval=0.05), env).critic_tau == 0.005
    critic, actor = copy.deepcopy(agent.critic_target), copy.deepcopy(agent.actor_target)
    agent.update(batch())
    assert_polyak(critic, agent.critic_target, agent.critic, 0.025)
    assert_polyak(actor, agent.actor_target, agent.actor, 0.005)
