"""Continuous Q-Score Matching: the whole agent in one file (DESIGN section 3, chapter 6).

The action is a diffusion ``da = Psi dt + sigma_a dB``, run by
:class:`~cqsm.rl.envs.ActionDiffusionWrapper`; the policy is its drift, the score
``Psi_theta(x, a_prev)``: ``rate_scale * tanh(.)``, or (``relaxation`` set) the relaxation of
the action toward a target action ``g_theta`` in the box, ``da = (g_theta - a) / relaxation dt``,
integrated exactly over the interval (``a <- g + (a - g) e^{-dt/relaxation}``) or by its Euler
step. Each update:

1. **Critic**, the discretised martingale condition (:meth:`CQSMAgent.td_target`): twin
   ``Q_phi(x_k, a_k)`` regress on ``r_k dt + e^{-beta dt}(-(lam/2)|Psi'|^2 dt +
   min_j Qbar_j(x_{k+1}, a'_{k+1}))``, with ``Psi' = Psi_theta(x_{k+1}, a_k)`` and ``a'_{k+1}``
   re-sampled from the current score, so replayed transitions give exact off-policy
   evaluation. Optionally TD3's stabilisers: a Polyak-averaged target score and clipped noise;
   target critics that advance as many seconds of horizon per update at any interval
   (``tau_interval``); and a bootstrap span in seconds (``bootstrap_span``): the condition
   over the replayed steps of a fixed time, so that each target looks as far ahead in seconds
   at any interval (its steps after the first are the behaviour's, as in any n-step target,
   priced by the current score).
2. **Score** (:meth:`CQSMAgent.update`): Q-score matching, ``|Psi_theta - grad_a Q_phi(x,
   a_hat) / lam|^2`` with ``a_hat = a_prev + Psi_theta dt`` held fixed, or its Feynman–Kac
   twin, maximise ``Q_phi(x, a_hat) - (lam/2)|Psi|^2 dt`` through ``Psi_theta``; both have
   the fixed point ``Psi = grad_a Q / lam`` and follow the first critic, as TD3's actor does.

The warm-up draws the score uniformly (``warmup="score"``), the action uniformly in the box
(``"action"``, as the baselines' warm-up), or a target in the box toward which the action relaxes
(``"target"``); the training loop holds each draw for ``warmup_hold`` seconds. Rewards are
rates, and every setting is in physical units: a different control interval leaves them unchanged.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from cqsm.rl.agents.common import (
    ActionBox,
    Saved,
    TwinCritic,
    as_batch,
    deep_mlp,
    descend,
    fit_critic,
    soft_update,
    target_rate,
    with_target,
)
from cqsm.rl.envs import ActionDiffusionWrapper, EnvError, check_box_actions, interval_of
from cqsm.rl.envs.action_diffusion import default_rate_scale
from cqsm.settings import SettingsError, check_choice, check_positive, check_widths

__all__ = [
    "CQSMSettings",
    "CQSMAgent",
    "ACTOR_FORMS",
    "WARMUPS",
    "RELAXATION_STEPS",
    "rate_scale",
    "env_rate",
    "contraction",
    "spread",
    "smoothing_scale",
]

ACTOR_FORMS = ("score_matching", "feynman_kac")
WARMUPS = ("score", "action", "target")
RELAXATION_STEPS = ("exact", "euler")


@dataclass
class CQSMSettings:
    """Settings of the CQSM agent (physical units: seconds, action units, rewards as rates)."""

    lam: float = 0.002
    """price of action speed: the running reward is r - (lam/2)|Psi|^2"""
    sigma_a: float = 1.0
    """noise of the action process, action units per square-root second (0 in evaluation)"""
    beta: float | None = None
    """discount rate per second (None: -ln(0.99)/native dt, 0.99 per native env step)"""
    rate_scale: float | None = None
    """largest score value, action units per second (None: :func:`rate_scale`)"""
    boundary: str = "reflect"
    """keeping the action in its box: 'reflect', 'project' or 'squash' (an unbounded latent)"""
    actor: str = "score_matching"
    """score update: 'score_matching' or 'feynman_kac' (the policy-gradient twin)"""
    hidden: tuple[int, ...] = (256, 256)
    """hidden layer widths of the critics and of the score network"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    score_lr: float = 3e-4
    """Adam learning rate of the score network"""
    tau: float = 0.005
    """Polyak rate of the target critics (and of the target score) per update"""
    tau_interval: float | None = None
    """the control interval, seconds, at which ``tau`` is the target critics' rate: at an
    interval ``dt`` it is ``tau * tau_interval / dt`` (at most 1), so that their value advances
    as many seconds of horizon per update at any interval (a one-step target adds ``dt``
    seconds); None: ``tau`` per update, whatever the interval"""
    score_every: int = 1
    """update the score once every this many critic updates"""
    relaxation: float | None = None
    """None: the score is rate_scale * tanh(.); a time in seconds: the score relaxes the
    action toward a target g_theta in the box at the rate (g_theta - a) / relaxation"""
    relaxation_step: str = "exact"
    """a relaxation score's move over one interval: 'exact', a <- g + (a - g) e^{-dt/relaxation}
    (Psi = (g - a)(1 - e^{-dt/relaxation}) / dt; never past g), or 'euler', a + (g - a)
    dt/relaxation (Psi = (g - a) / relaxation; past g once dt > relaxation)"""
    score_sees_action: bool = True
    """the score's input: (x, a_prev) (True), or x alone (False: with a relaxation score, the
    target g_theta(x) is then a policy of the state alone, as TD3's actor)"""
    warmup: str = "score"
    """the uniformly random warm-up: 'score' draws the score in +-rate_scale; 'action' moves
    the action to a uniform point of the env's box in one step, as the baselines' warm-up;
    'target' relaxes the action toward a uniform point of the box (needs a relaxation)"""
    target_score: bool = False
    """move the TD target's next action by a Polyak-averaged score (TD3's target actor)"""
    target_noise: float = 0.0
    """extra noise on the TD target's next action, action units, clipped at 2.5 standard
    deviations (TD3's target policy smoothing), beside the action process's own"""
    target_noise_interval: float | None = None
    """the control interval ``T``, seconds, at which ``target_noise`` is the smoothing's
    standard deviation. Each target's smoothed next action is the action argument of the next
    target, so along a relaxation (which shrinks the action's distance to the score's target by
    ``rho(dt)`` per step) the smoothings compound to a variance of ``sd^2 / (1 - rho(dt)^2)``;
    at an interval ``dt`` the smoothing is ``target_noise * sqrt((1 - rho(dt)^2) / (1 -
    rho(T)^2))``, so that this variance is the same at every interval. Without a relaxation
    (the action's distance does not shrink) it is a noise per square-root second,
    ``target_noise * sqrt(dt / T)``. None: ``target_noise`` at every interval"""
    bootstrap_span: float | None = None
    """seconds each critic target spans: the replayed steps within it (round(span / dt) of
    them, at least one), then the bootstrap; None: one control step, whatever the interval"""

    def __post_init__(self):
        check_positive(self, "lam", "critic_lr", "score_lr", "tau")
        check_positive(self, "score_every", integer=True)
        check_positive(
            self,
            "beta",
            "relaxation",
            "bootstrap_span",
            "tau_interval",
            "target_noise_interval",
            optional=True,
        )
        check_positive(self, "target_noise", zero=True)
        check_choice(self, "actor", ACTOR_FORMS, "actor form")
        check_choice(self, "warmup", WARMUPS, "warm-up")
        check_choice(self, "relaxation_step", RELAXATION_STEPS, "relaxation step")
        if self.boundary == "squash" and (self.warmup != "score" or self.relaxation):
            raise SettingsError(
                f"The {self.warmup!r} warm-up and a relaxation score put the action at a point "
                "of the env's box; they need boundary 'reflect' or 'project', not 'squash'."
            )
        if self.warmup == "target" and self.relaxation is None:
            raise SettingsError(
                "The 'target' warm-up relaxes the action toward its draw: give a relaxation "
                "time in seconds, or choose warmup 'action' or 'score'."
            )
        check_widths(self, "hidden")


def contraction(dt: float, relaxation: float | None, step: str = "exact") -> float:
    """How much one step of ``dt`` seconds shrinks the action's distance to a relaxation
    score's target: ``e^{-dt/relaxation}`` (exact) or ``1 - dt/relaxation`` (Euler); 1 without
    a relaxation (the distance does not shrink)."""
    if relaxation is None:
        return 1.0
    return math.exp(-dt / relaxation) if step == "exact" else 1 - dt / relaxation


def spread(dt: float, relaxation: float | None, step: str = "exact") -> float:
    """``1 - rho^2`` (``rho``: :func:`contraction`): a noise of variance ``sd^2`` added at every
    step of ``dt`` seconds accumulates along the relaxation to ``sd^2 / (1 - rho^2)``; 0 where
    the distance does not shrink (no relaxation), negative where an Euler step overshoots
    past the target by more than the distance (rho < -1)."""
    return 1 - contraction(dt, relaxation, step) ** 2


def smoothing_scale(
    dt: float, interval: float, relaxation: float | None, step: str = "exact"
) -> float:
    """The target smoothing's standard deviation at ``dt`` over the one at ``interval``
    seconds that compounds to the same variance along the relaxation: a noise added at every
    step accumulates to ``sd^2 / (1 - rho^2)`` (:func:`spread`), so the ratio is
    ``sqrt((1 - rho(dt)^2) / (1 - rho(interval)^2))``; ``sqrt(dt / interval)`` without a
    relaxation (a noise per square-root second)."""
    if relaxation is None:
        return math.sqrt(dt / interval)
    spreads = {t: spread(t, relaxation, step) for t in (dt, interval)}
    if min(spreads.values()) <= 0:
        raise SettingsError(
            f"An Euler relaxation of {relaxation:g} s does not contract over "
            f"{max(dt, interval):g} s (target_noise_interval or the control interval); give "
            "the exact relaxation step, or a longer relaxation."
        )
    return math.sqrt(spreads[dt] / spreads[interval])


def _width(space: gym.spaces.Box) -> float:
    return float(np.max(space.high - space.low))


def rate_scale(settings: CQSMSettings, space: gym.spaces.Box) -> float:
    """The score's bound, action units per second: the setting, else (relaxation) fast enough
    that relaxing across the whole box is never cut short, else ten box widths per second."""
    if settings.rate_scale is not None:
        return settings.rate_scale
    if settings.relaxation is not None:
        return _width(space) / settings.relaxation
    return default_rate_scale(space)


def env_rate(settings: CQSMSettings, space: gym.spaces.Box, dt: float) -> float:
    """The fastest the env must let the action move, per second: the score's bound, or with
    the 'action' warm-up at least one box width per control step of ``dt`` seconds."""
    bound = rate_scale(settings, space)
    return max(bound, _width(space) / dt) if settings.warmup == "action" else bound


class CQSMAgent(Saved):
    """The CQSM agent acting in an :class:`~cqsm.rl.envs.ActionDiffusionWrapper`."""

    Settings = CQSMSettings
    PARTS = ("score_net", "score_target", "critic", "critic_target", "critic_opt", "score_opt")
    POLICY_PARTS = ("score_net",)  # the score network alone: policy.pt is 270 KB

    @staticmethod
    def wrap(env: gym.Env, settings: CQSMSettings, explore: bool) -> gym.Env:
        """The action-diffusion wrapper, letting the action move as fast as :func:`env_rate`."""
        check_box_actions(env, "CQSM")
        fastest = env_rate(settings, env.action_space, interval_of(env).dt)
        return ActionDiffusionWrapper(env, settings.sigma_a, fastest, settings.boundary, explore)

    def __init__(self, settings: CQSMSettings, env: gym.Env):
        if not isinstance(env, ActionDiffusionWrapper):
            raise EnvError("CQSMAgent acts in an ActionDiffusionWrapper: use CQSMAgent.wrap.")
        self.settings = s = settings
        self.n, self.diffusion, self.dt, self.base_dt = env.n, env.diffusion, env.dt, env.base_dt
        space = env.env.action_space
        self.rate_scale = rate_scale(s, space)
        self.warmup_reach = env.rate_scale  # the fastest move the env allows, per second
        needed = env_rate(s, space, self.dt)
        if env.rate_scale < needed * (1 - 1e-6):
            raise SettingsError(
                f"The env lets the action move {env.rate_scale:g} per second; these settings "
                f"need at least {needed:g}. Use CQSMAgent.wrap."
            )
        in_box = s.relaxation is not None or s.warmup != "score"  # targets in the env's box
        self.box = ActionBox(space, "A relaxation score or warm-up") if in_box else None
        # the default discount is 0.99 per *native* step: a rate per second, whatever the interval
        self.beta = s.beta if s.beta is not None else -math.log(0.99) / env.native_dt
        self.discount = math.exp(-self.beta * self.dt)
        # the replayed steps each critic target follows (ReplayBuffer.sample's steps)
        span = s.bootstrap_span
        self.span_steps = 1 if span is None else max(1, round(span / self.dt))
        self.critic_tau = target_rate(s.tau, s.tau_interval, self.dt)  # per update
        # the target smoothing's standard deviation at this interval
        self.target_noise = s.target_noise
        if s.target_noise_interval is not None:
            self.target_noise *= smoothing_scale(
                self.dt, s.target_noise_interval, s.relaxation, s.relaxation_step
            )
        # the time a relaxation score divides its distance to the target by: the relaxation
        # time for the Euler step, dt / (1 - e^{-dt/relaxation}) (longer) for the exact one
        self.relax_time = s.relaxation
        if s.relaxation is not None and s.relaxation_step == "exact":
            self.relax_time = -self.dt / math.expm1(-self.dt / s.relaxation)

        d = self.diffusion.d
        self.score_net = deep_mlp(self.n + d if s.score_sees_action else self.n, s.hidden, d)
        self.score_opt = torch.optim.Adam(self.score_net.parameters(), lr=s.score_lr, fused=True)
        self.score_target = copy.deepcopy(self.score_net).requires_grad_(False)  # if target_score
        self.critic, self.critic_target, self.critic_opt = with_target(
            TwinCritic(self.n, d, s.hidden), s.critic_lr
        )
        self.updates = 0

    def score(self, obs: torch.Tensor, net: torch.nn.Module | None = None) -> torch.Tensor:
        """``Psi_theta(x, a_prev)`` in action units per second, bounded by the rate scale
        (``net``: the score network to use, the current one by default)."""
        seen = obs if self.settings.score_sees_action else obs[:, : self.n]
        out = torch.tanh((net or self.score_net)(seen))
        if self.settings.relaxation is None:
            return self.rate_scale * out
        psi = (self.box.to_env(out) - obs[:, self.n :]) / self.relax_time
        return psi.clamp(-self.rate_scale, self.rate_scale)

    def warmup_action(self, obs: np.ndarray, draw: np.ndarray) -> np.ndarray:
        """The warm-up's score from ``draw``, uniform in the env's score box: the draw itself
        ('score'), or the score that moves the action to the matching point of the env's box
        in one step ('action') or relaxes it toward that point ('target'); the same random
        numbers in every case."""
        if self.settings.warmup == "score":
            return draw
        unit = torch.as_tensor(draw / self.warmup_reach, dtype=torch.float32)  # in [-1, 1]
        lag = self.dt if self.settings.warmup == "action" else self.relax_time
        psi = (self.box.to_env(unit).numpy() - obs[self.n :]) / lag
        return np.clip(psi, -self.warmup_reach, self.warmup_reach).astype(draw.dtype)

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        # One network evaluation per step; the wrapper adds the noise (none in evaluation).
        return self.score(as_batch(obs))[0].numpy()

    @torch.no_grad()
    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The discretised martingale condition, with ``a'_{k+1}`` re-sampled from the
        current score (or the target score), plus the target noise if any. With a bootstrap
        span (``batch["span"]``, from ``ReplayBuffer.sample`` with ``steps``), the condition
        over the span's ``m`` replayed steps: their discounted rewards, the price of the
        current score at each of their states after the first (the price the one-step
        target charges its next step), and the bootstrap from the span's last next
        observation. The replayed scores are not priced: they are the behaviour's, and a
        warm-up that moves the action across the box in one step pays a price no learned
        score would."""
        # rewards are rates; a terminated episode has no future, a truncated one does
        if "span" not in batch:
            alive = 1 - batch["terminated"]
            return batch["reward"] * self.base_dt + alive * self.discount * self._future(
                batch["next_obs"]
            )
        s, steps = self.settings, batch["span_reward"].shape[1]
        weights = self.discount ** torch.arange(steps, dtype=torch.float32)
        rewards = (batch["span_reward"] * weights).sum(1) * self.base_dt
        inside = torch.arange(1, steps) < batch["span"][:, None]  # states after the first
        net = self.score_target if s.target_score else self.score_net
        scores = self.score(batch["span_obs"].flatten(0, 1), net).unflatten(0, inside.shape)
        prices = scores.square().sum(-1) * inside * weights[1:]
        running = rewards - 0.5 * s.lam * prices.sum(1) * self.dt
        alive = 1 - batch["span_terminated"]
        tail = self.discount ** batch["span"].to(torch.float32)
        return running + alive * tail * self._future(batch["span_next_obs"])

    def _future(self, next_obs: torch.Tensor) -> torch.Tensor:
        """``-(lam/2)|Psi'|^2 dt + min_j Qbar_j(x', a')``, ``a'`` moved by the score at
        ``next_obs = (x', a)`` (``a`` the action applied last) and the action noise."""
        s, n, dt = self.settings, self.n, self.dt
        x_next, a = next_obs[:, :n], next_obs[:, n:]  # a_k was applied at x_k
        net = self.score_target if s.target_score else self.score_net
        psi_next = self.score(next_obs, net)
        a_next = self.diffusion.move(a, psi_next, torch.randn_like(a))
        if self.target_noise:
            limit = 2.5 * self.target_noise
            smoothing = (self.target_noise * torch.randn_like(a)).clamp(-limit, limit)
            a_next = self.diffusion.keep(a_next + smoothing)
        q_next = torch.min(*self.critic_target(x_next, a_next))
        return q_next - 0.5 * s.lam * psi_next.square().sum(-1) * dt

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        s, n, dt = self.settings, self.n, self.dt
        obs, a = batch["obs"], batch["next_obs"][:, n:]
        x, a_prev = obs[:, :n], obs[:, n:]  # what the score saw; then a_k was applied

        # Critic: regress both critics on the TD target.
        info = fit_critic(self.critic, self.critic_opt, x, a, self.td_target(batch))
        self.updates += 1
        if self.updates % s.score_every:
            return info

        # Score: Q-score matching, or its Feynman–Kac policy-gradient twin.
        psi = self.score(obs)
        a_hat = self.diffusion.mean_move(a_prev, psi)
        if s.actor == "feynman_kac":
            a_hat.retain_grad()  # for the diagnostics: grad_a Q_phi1 at the move
            speed = 0.5 * s.lam * psi.square().sum(-1)
            loss = -(self.critic.first(x, a_hat) / dt - speed).mean()
        else:
            a_hat = a_hat.detach().requires_grad_(True)
            q_hat = self.critic.first(x, a_hat)
            grad_a = torch.autograd.grad(q_hat.sum(), a_hat)[0]
            loss = (psi - grad_a / s.lam).square().sum(-1).mean()
        descend(self.score_opt, loss, also=(a_hat,) if s.actor == "feynman_kac" else ())
        soft_update(self.critic_target, self.critic, self.critic_tau)
        if s.target_score:
            soft_update(self.score_target, self.score_net, s.tau)
        if s.actor == "feynman_kac":  # the loss's gradient is -grad_a Q_phi1 / (batch dt)
            grad_a = -a_hat.grad * (x.shape[0] * dt)
        return info | self.diagnostics(loss, psi, grad_a, a, a_hat)

    @torch.no_grad()
    def diagnostics(self, loss, psi, grad_a, a, a_hat) -> dict[str, float]:
        """What each score update logs: its loss, the RMS score and how often it saturates,
        ``|grad_a Q_phi1|`` at the move, and the RMS distance of the replayed actions from the
        current score's noiseless move (exploration alone gives about ``sigma_a sqrt(dt)``)."""
        return {
            "score_loss": loss.item(),
            "score_rms": psi.square().mean().sqrt().item(),
            "score_saturated": (psi.abs() > 0.95 * self.rate_scale).float().mean().item(),
            "grad_a_q": grad_a.norm(dim=-1).mean().item(),
            "replay_gap": (a - a_hat).square().mean().sqrt().item(),
        }
