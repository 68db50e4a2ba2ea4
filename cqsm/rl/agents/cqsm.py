"""Continuous Q-Score Matching: the whole agent in one file.

The action is a diffusion ``da = Psi dt + sigma_a dB`` (run by
:class:`~cqsm.rl.envs.ActionDiffusionWrapper`); the policy is its drift, the score
``Psi_theta(x, a_prev)``. Each update:

1. **Critic** (policy evaluation, the discretised martingale condition): twin ``Q_phi(x_k, a_k)``
   regress on

       r_k dt + e^{-beta dt} ( -(lam/2)|Psi'|^2 dt + min_j Qbar_j(x_{k+1}, a'_{k+1}) ),
       Psi' = Psi_theta(x_{k+1}, a_k),   a'_{k+1} = boundary(a_k + Psi' dt + sigma_a sqrt(dt) eps),

   with ``a'_{k+1}`` re-sampled from the *current* score (the action dynamics are known), so
   replayed transitions give exact off-policy evaluation; ``terminated`` stops bootstrapping.
   Optionally ``Psi'`` comes from a Polyak-averaged target score (``target_score``) and
   ``a'_{k+1}`` carries extra clipped noise (``target_noise``), TD3's two stabilisers of its target.
2. **Score** (policy improvement), one of
   - Q-score matching: ``|Psi_theta - grad_a Q_phi(x, a_hat) / lam|^2`` with ``a_hat = a_prev +
     Psi_theta dt`` held fixed (``"score_matching"``), or the same loss divided by the batch's
     mean squared target (``"scale_free"``: same minimiser, a gradient that does not grow as
     ``lam`` shrinks);
   - its Feynman–Kac (proximal) policy-gradient twin: maximise
     ``Q_phi(x, a_hat) - (lam/2)|Psi|^2 dt`` through ``Psi_theta`` (``"feynman_kac"``).
   Both have the fixed point ``Psi = grad_a Q / lam``; both use the first critic ``Q_phi1``, as
   TD3's actor does.

The score network gives ``Psi_theta`` directly, ``rate_scale * tanh(.)``, or (``relaxation`` set)
a target action ``g_theta(x, a_prev)`` in the box that the action relaxes toward,
``Psi_theta = (g_theta - a_prev) / relaxation``: the same drift, with a time constant in seconds.

The uniformly random warm-up before the first update draws the score (``warmup="score"``: the
action wanders with random drifts) or the action itself, uniformly in the box and afresh at each
step, as the baselines' warm-up does (``"action"``); chapter 8 measures how much that matters.

Rewards are rates (their integral over a step is ``reward * base_dt``); ``lam``, ``sigma_a``,
``beta``, the rate scale and the relaxation time are in physical units, so they do not change with
the control interval. ``q_unit`` only rescales the critics' outputs.
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
    with_target,
)
from cqsm.rl.envs import ActionDiffusionWrapper, EnvError, check_box_actions, interval_of
from cqsm.rl.envs.action_diffusion import default_rate_scale
from cqsm.settings import SettingsError, check_positive, check_widths

__all__ = ["CQSMSettings", "CQSMAgent", "ACTOR_FORMS", "WARMUPS"]

ACTOR_FORMS = ("score_matching", "scale_free", "feynman_kac")
WARMUPS = ("score", "action")


@dataclass
class CQSMSettings:
    """Settings of the CQSM agent (physical units: seconds, action units, rewards as rates)."""

    lam: float = 0.002
    """price of action speed: the running reward is r - (lam/2)|Psi|^2"""
    sigma_a: float = 1.0
    """noise of the action process, action units per square-root second (0 in evaluation)"""
    beta: float | None = None
    """discount rate per second (None: -ln(0.99)/native dt, i.e. 0.99 per native env step, at
    every control interval)"""
    rate_scale: float | None = None
    """largest score value, action units per second (None: ten box widths per second)"""
    boundary: str = "reflect"
    """keeping the action in its box: 'reflect', 'project' or 'squash' (an unbounded latent)"""
    actor: str = "score_matching"
    """score update: 'score_matching', 'scale_free' or 'feynman_kac' (the policy-gradient twin)"""
    hidden: tuple[int, ...] = (256, 256)
    """hidden layer widths of the critics and of the score network"""
    critic_lr: float = 3e-4
    """Adam learning rate of the critics"""
    score_lr: float = 3e-4
    """Adam learning rate of the score network"""
    tau: float = 0.005
    """Polyak rate of the target critics"""
    score_every: int = 1
    """update the score once every this many critic updates"""
    q_unit: float = 1.0
    """the critics' output unit: Q = q_unit * Q_phi (the control interval gives a critic the
    numbers of a per-step return; the objective and the score do not change)"""
    relaxation: float | None = None
    """None: the network gives the score, rate_scale * tanh(.); a time in seconds: the score
    relaxes the action toward a target g_theta(x, a) in the box, Psi = (g_theta - a) / relaxation"""
    score_sees_action: bool = True
    """the score's input: (x, a_prev) (True), or x alone (False: with a relaxation score, the
    target g_theta(x) is then a policy of the state alone, as TD3's actor)"""
    warmup: str = "score"
    """the uniformly random warm-up: 'score' draws the score uniformly in +-rate_scale (the action
    wanders with random drifts); 'action' moves the action to a uniform point of the env's box in
    one step, as the baselines' warm-up (the env then lets a warm-up move cross the box in one
    step; the score keeps its own bound)"""
    target_score: bool = False
    """move the TD target's next action by a Polyak-averaged copy of the score (rate tau, moved
    with each score update), as TD3's target actor; False: by the current score"""
    target_noise: float = 0.0
    """extra noise on the TD target's next action, action units, clipped at 2.5 standard
    deviations (TD3's target policy smoothing); the action process's own noise is always there"""

    def __post_init__(self):
        check_positive(self, "lam", "critic_lr", "score_lr", "tau", "q_unit")
        if self.beta is not None and not (math.isfinite(self.beta) and self.beta > 0):
            raise SettingsError(
                f"CQSMSettings.beta must be a positive rate per second; got {self.beta!r}."
            )
        if self.actor not in ACTOR_FORMS:
            raise SettingsError(f"Unknown actor form {self.actor!r}; choose one of {ACTOR_FORMS}.")
        check_positive(self, "score_every", integer=True)
        if self.warmup not in WARMUPS:
            raise SettingsError(f"Unknown warm-up {self.warmup!r}; choose one of {WARMUPS}.")
        if self.warmup == "action" and self.boundary == "squash":
            raise SettingsError(
                "The 'action' warm-up draws actions in the env's box; it needs boundary "
                "'reflect' or 'project', not 'squash'."
            )
        if not (math.isfinite(self.target_noise) and self.target_noise >= 0):
            raise SettingsError(
                f"CQSMSettings.target_noise must be >= 0 (action units); got {self.target_noise!r}."
            )
        if self.relaxation is not None:
            check_positive(self, "relaxation")
            if self.boundary == "squash":
                raise SettingsError(
                    "A relaxation score moves the action toward a target in the box; it needs "
                    "boundary 'reflect' or 'project', not 'squash'."
                )
        check_widths(self, "hidden")


def _width(space: gym.spaces.Box) -> float:
    """The box's widest side."""
    return float(np.max(space.high - space.low))


class CQSMAgent(Saved):
    """The CQSM agent acting in an :class:`~cqsm.rl.envs.ActionDiffusionWrapper`."""

    Settings = CQSMSettings
    PARTS = ("score_net", "critic", "critic_target", "critic_opt", "score_opt")
    POLICY_PARTS = ("score_net",)  # the score network alone: policy.pt is 270 KB

    @staticmethod
    def wrap(env: gym.Env, settings: CQSMSettings, explore: bool) -> gym.Env:
        check_box_actions(env, "CQSM")
        rate_scale = CQSMAgent.score_bound(settings, env.action_space)
        if settings.warmup == "action":
            # the warm-up jumps anywhere in the box in one step; the score keeps its own bound
            rate_scale = max(rate_scale, _width(env.action_space) / interval_of(env).dt)
        return ActionDiffusionWrapper(
            env,
            sigma_a=settings.sigma_a,
            rate_scale=rate_scale,
            boundary=settings.boundary,
            explore=explore,
        )

    @staticmethod
    def score_bound(settings: CQSMSettings, space: gym.spaces.Box) -> float:
        """The largest score value: the rate scale, else (relaxation) fast enough that relaxing
        across the whole box is never cut short, else ten box widths per second."""
        if settings.rate_scale is not None:
            return settings.rate_scale
        if settings.relaxation is not None:
            return _width(space) / settings.relaxation
        return default_rate_scale(space)

    def __init__(self, settings: CQSMSettings, env: gym.Env):
        if not isinstance(env, ActionDiffusionWrapper):
            raise EnvError(
                "CQSMAgent acts in an ActionDiffusionWrapper; build the env with CQSMAgent.wrap."
            )
        self.settings = s = settings
        self.n, self.diffusion = env.n, env.diffusion
        self.dt, self.base_dt, self.reach = env.dt, env.base_dt, env.rate_scale
        self.rate_scale = env.rate_scale  # the score's bound; the env's, but for an 'action'
        if s.warmup == "action":  # warm-up, whose moves the env lets cross the box in one step
            self.rate_scale = min(env.rate_scale, self.score_bound(s, env.env.action_space))
        # the default discount is 0.99 per *native* step: a rate per second, whatever the interval
        self.beta = s.beta if s.beta is not None else -math.log(0.99) / env.native_dt
        self.discount = math.exp(-self.beta * self.dt)
        self.q_unit = s.q_unit
        d = self.diffusion.d
        self.score_net = deep_mlp(self.n + d if s.score_sees_action else self.n, s.hidden, d)
        if s.target_score:
            self.score_target = copy.deepcopy(self.score_net).requires_grad_(False)
            self.PARTS = type(self).PARTS + ("score_target",)
        self.critic, self.critic_target, self.critic_opt = with_target(
            TwinCritic(self.n, d, s.hidden), s.critic_lr
        )
        self.score_opt = torch.optim.Adam(self.score_net.parameters(), lr=s.score_lr, fused=True)
        if s.relaxation is not None or s.warmup == "action":  # targets in the env's own box
            self.box = ActionBox(env.env.action_space, "A relaxation score or warm-up")
            reach = _width(env.env.action_space) / self.dt
            if s.warmup == "action" and self.reach < reach * (1 - 1e-6):
                raise SettingsError(
                    f"The 'action' warm-up moves across the box in one step: the env's rate "
                    f"scale must be at least {reach:g} per second here; got {self.reach:g}. "
                    "Build the env with CQSMAgent.wrap."
                )
        self.updates = 0

    def score(self, obs: torch.Tensor, target: bool = False) -> torch.Tensor:
        """``Psi_theta(x, a_prev)`` in action units per second, bounded by the rate scale
        (``target=True``: the target score's)."""
        seen = obs if self.settings.score_sees_action else obs[:, : self.n]
        out = torch.tanh((self.score_target if target else self.score_net)(seen))
        if self.settings.relaxation is None:
            return self.rate_scale * out
        target = self.box.to_env(out)
        psi = (target - obs[:, self.n :]) / self.settings.relaxation
        return psi.clamp(-self.rate_scale, self.rate_scale)

    def warmup_action(self, obs: np.ndarray, draw: np.ndarray) -> np.ndarray:
        """The warm-up's score from ``draw``, a uniform draw of the score box: the draw itself
        ('score'), or the score that moves the action to the matching point of the env's box
        ('action'; the same random numbers either way)."""
        if self.settings.warmup == "score":
            return draw
        unit = draw / self.reach  # uniform in [-1, 1]
        target = self.box.to_env(torch.as_tensor(unit, dtype=torch.float32)).numpy()
        psi = (target - obs[self.n :]) / self.dt
        return np.clip(psi, -self.reach, self.reach).astype(draw.dtype)

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool = True) -> np.ndarray:
        # One network evaluation per step; the wrapper adds the noise (none in evaluation).
        return self.score(as_batch(obs))[0].numpy()

    @torch.no_grad()
    def td_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The discretised martingale condition, ``a'_{k+1}`` re-sampled from the current score
        (or the target score), with the target noise if any."""
        s, n, dt = self.settings, self.n, self.dt
        next_obs = batch["next_obs"]
        x_next, a = next_obs[:, :n], next_obs[:, n:]  # (x_{k+1}, a_k): a_k was applied at x_k
        psi_next = self.score(next_obs, target=s.target_score)
        a_next = self.diffusion.move(a, psi_next, torch.randn_like(a))
        if s.target_noise:
            smoothing = s.target_noise * torch.randn_like(a)
            limit = 2.5 * s.target_noise
            a_next = self.diffusion.keep(a_next + smoothing.clamp(-limit, limit))
        q_next = self.q_unit * torch.min(*self.critic_target(x_next, a_next))
        future = q_next - 0.5 * s.lam * psi_next.square().sum(-1) * dt
        # rewards are rates; a terminated episode has no future, a truncated one does
        target = batch["reward"] * self.base_dt + (1 - batch["terminated"]) * self.discount * future
        return target / self.q_unit  # in the critics' unit

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        s, n, dt = self.settings, self.n, self.dt
        obs, a = batch["obs"], batch["next_obs"][:, n:]
        x, a_prev = obs[:, :n], obs[:, n:]  # (x_k, a_{k-1}): what the score saw; a_k applied

        # Critic: regress both critics on the TD target.
        info = fit_critic(self.critic, self.critic_opt, x, a, self.td_target(batch))
        info["q"] *= self.q_unit
        self.updates += 1
        if self.updates % s.score_every:
            return info

        # Score: Q-score matching, or its Feynman–Kac policy-gradient twin.
        psi = self.score(obs)
        a_hat = self.diffusion.mean_move(a_prev, psi)
        if s.actor == "feynman_kac":
            a_hat.retain_grad()  # its gradient is -grad_a Q_phi1 / (batch dt): a diagnostic
            q_hat = self.q_unit * self.critic.first(x, a_hat)
            score_loss = -(q_hat / dt - 0.5 * s.lam * psi.square().sum(-1)).mean()
        else:
            a_hat = a_hat.detach().requires_grad_(True)
            q_hat = self.q_unit * self.critic.first(x, a_hat)
            grad_a = torch.autograd.grad(q_hat.sum(), a_hat)[0]
            target_psi = grad_a / s.lam
            score_loss = (psi - target_psi).square().sum(-1).mean()
            if s.actor == "scale_free":
                score_loss = score_loss / target_psi.square().sum(-1).mean().clamp_min(1e-12)
        descend(self.score_opt, score_loss, also=(a_hat,) if s.actor == "feynman_kac" else ())
        soft_update(self.critic_target, self.critic, s.tau)
        if s.target_score:
            soft_update(self.score_target, self.score_net, s.tau)
        with torch.no_grad():
            if s.actor == "feynman_kac":
                grad_a = -a_hat.grad * (x.shape[0] * dt)
            info["score_loss"] = score_loss.item()
            info["score_rms"] = psi.square().mean().sqrt().item()
            info["score_saturated"] = (psi.abs() > 0.95 * self.rate_scale).float().mean().item()
            info["grad_a_q"] = grad_a.norm(dim=-1).mean().item()
            # how far the replayed actions are from the current score's noiseless move, per
            # coordinate (exploration alone gives about sigma_a sqrt(dt))
            info["replay_gap"] = (a - a_hat).square().mean().sqrt().item()
        return info
