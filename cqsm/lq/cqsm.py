"""CQSM on linear-quadratic problems, learning from simulated data alone (chapter 5).

Two variants, both alternating policy evaluation by the martingale characterisation with policy
improvement by Q-score matching:

* **offline**: simulate whole episodes under the current score, fit the critic by the martingale
  loss (exactly: it is a least-squares problem for the quadratic family), then fit the score to
  ``grad_a Q_phi / lam`` (exactly: least squares for the linear family); repeat;
* **online**: update the critic at every time step through martingale orthogonality (TD(0) or
  TD(lambda)) and the score alongside by a Q-score-matching step
  (:func:`cqsm.lq.evaluation.run_online`).

In both, the critic's constant ``c_phi`` is the one its ``P_phi`` implies by Ito's formula, with
the noise covariance estimated from the same paths (:func:`fit_critic`): fitted as a free function
of time, ``c_phi`` is the mean of the returns left after the quadratic part and carries their
martingale noise, 1% to 18% of ``c`` at chapter 5's book sizes (reported as ``free c error``).

The learned gains, critic and the exact value of the learned score (:meth:`LQProblem.evaluate`)
are compared with the Riccati solution.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from cqsm.lq import martingale as mg
from cqsm.lq.critics import QuadraticCritic
from cqsm.lq.evaluation import (
    OnlineSettings,
    feature_preconditioner,
    initial_states,
    relative_error,
    relative_l2,
    run_online,
)
from cqsm.lq.problem import LQProblem
from cqsm.lq.score_matching import fit_linear_score
from cqsm.lq.scores import LinearScore
from cqsm.lq.sde import Paths, noise_covariance, simulate

__all__ = [
    "OfflineSettings",
    "OnlineSettings",
    "CQSMRun",
    "offline_cqsm",
    "online_cqsm",
    "compare",
    "fit_critic",
    "gain_error",
    "relative_gain_error",
    "critic_greedy_gain",
]


@dataclass(frozen=True)
class OfflineSettings:
    """Offline CQSM: martingale-loss critic fits and Q-score-matching steps, alternated."""

    n_iterations: int = 6
    """Policy-iteration rounds (evaluate, then improve)."""
    n_paths: int = 16000
    """Episodes simulated per round."""
    dt: float = 0.01
    """Time step of the Euler–Maruyama grid (time units)."""
    critic_degree: int = 4
    """Degree of the critic's time polynomials."""
    score_degree: int = 4
    """Degree of the score's time polynomials."""
    init_spread: float = 1.0
    """Initial states z_0 ~ N(0, init_spread^2 I)."""
    seed: int = 0
    """Seed of the simulation."""


@dataclass
class CQSMRun:
    """What a CQSM run on an LQ problem learned, and how close it came to the closed form."""

    history: pd.DataFrame
    """One row of errors per round (offline) or recorded episode (online)."""
    score: LinearScore
    """The learned score (online: the Polyak average)."""
    critic: QuadraticCritic
    """The learned critic (``critic.phi``; online: the Polyak average)."""
    final: dict = field(default_factory=dict)
    """The errors of the learned score and critic (see :func:`compare`)."""


def relative_gain_error(prob: LQProblem, gain, n_times: int = 21) -> float:
    """Relative L2-in-time error of a gain function ``t -> K(t)`` against the Riccati gain.

    ``sqrt(sum_t |K(t) - K*(t)|^2 / sum_t |K*(t)|^2)`` over ``n_times`` equispaced times of the
    horizon (:func:`~cqsm.lq.evaluation.relative_l2`).
    """
    return relative_l2(gain, prob.optimal().gain, prob.horizon, n_times)


def gain_error(prob: LQProblem, score: LinearScore, n_times: int = 21) -> float:
    """Relative L2-in-time error of the score's gain ``K_theta(t)`` against the Riccati gain."""
    return relative_gain_error(prob, score.gain_function(), n_times)


def critic_greedy_gain(prob: LQProblem, critic: QuadraticCritic, phi=None):
    """The gain function ``t -> -(1/lam) calE^T P_phi(t)`` of the critic's greedy score.

    For the quadratic critic ``grad_a Q_phi / lam = -(1/lam) calE^T P_phi(t) z``: the
    Q-score-matching target is a linear score, and this is its gain (``phi``: the critic's
    parameters, by default ``critic.phi``).
    """
    return lambda t: -(prob.calE.T @ critic.P(t, phi)) / prob.lam


def fit_critic(critic: QuadraticCritic, paths: Paths) -> tuple[torch.Tensor, torch.Tensor]:
    """The martingale-loss critic with the Ito constant, and the free fit: ``(phi, phi_free)``.

    ``phi_free`` minimises the martingale loss over the whole family (``P`` and ``c`` free);
    ``phi`` keeps its ``P_phi`` and takes the constant ``P_phi`` implies, with the noise
    covariance estimated from ``paths`` (:meth:`QuadraticCritic.ito_constant`).
    """
    free = mg.fit_martingale_loss(critic, paths)
    cov = noise_covariance(paths)
    return critic.ito_constant(free, cov, paths.discount), free


def compare(
    prob: LQProblem,
    critic: QuadraticCritic,
    phi,
    score: LinearScore,
    spread: float,
    phi_free=None,
):
    """Errors against the closed form: critic (P, c), gain, and the learned score's value gap.

    The value is the exact expected objective ``E Q^{Psi_theta}(0, z_0)`` for
    ``z_0 ~ N(0, spread^2 I)``, compared with the optimum's. With ``phi_free`` (the critic
    with its constant fitted freely, :func:`fit_critic`) the error of that constant is
    added as ``free c error``.
    """
    opt = prob.optimal()
    eP, ec = relative_error(critic, phi, opt)
    cov = spread**2 * np.eye(prob.dim)
    v_opt = opt.expected_value(np.zeros(prob.dim), cov, 0.0)
    v = prob.evaluate(score.gain_function()).expected_value(np.zeros(prob.dim), cov, 0.0)
    errors = {
        "critic P error": eP,
        "critic c error": ec,
        "gain error": gain_error(prob, score),
        "value": v,
        "optimal value": v_opt,
        "value gap": (v_opt - v) / abs(v_opt),
    }
    if phi_free is not None:
        errors["free c error"] = relative_error(critic, phi_free, opt)[1]
    return errors


def offline_cqsm(prob: LQProblem, settings: OfflineSettings, K0) -> CQSMRun:
    """Run offline CQSM from the constant gain ``K0``: one history row per round.

    Round 0 evaluates ``K0``; the last round evaluates the last improved score, and the
    returned score and critic are those. (Chapter 5 prints this function: its lines keep
    within 88 columns.)
    """
    gen = torch.Generator().manual_seed(settings.seed)
    critic = QuadraticCritic.for_problem(prob, settings.critic_degree)
    score = LinearScore.for_problem(prob, settings.score_degree, K0=K0)
    sde = prob.sde()
    rows = []
    for it in range(settings.n_iterations + 1):
        z0 = initial_states(settings.n_paths, prob.dim, settings.init_spread, gen)
        paths = simulate(sde, score, z0, settings.dt, generator=gen)
        phi, phi_free = fit_critic(critic, paths)
        with torch.no_grad():
            critic.phi.copy_(phi)
        errors = compare(prob, critic, phi, score, settings.init_spread, phi_free)
        rows.append({"iteration": it, **errors} | _gain_columns(score))
        if it < settings.n_iterations:
            fit_linear_score(score, critic, paths, prob.lam)
    final = {k: v for k, v in rows[-1].items() if k != "iteration"}
    return CQSMRun(pd.DataFrame(rows), score, critic, final)


def _gain_columns(score: LinearScore) -> dict:
    K = score.gain(0.0)
    return {f"K0[{i},{j}]": K[i, j] for i in range(K.shape[0]) for j in range(K.shape[1])}


def online_cqsm(
    prob: LQProblem, settings: OnlineSettings, K0, record_every: int = 10, progress: bool = False
) -> CQSMRun:
    """Run online CQSM from ``K0``: errors of the running iterate every ``record_every`` episodes
    in ``history``; the Polyak-averaged score and critic and their errors in ``score``, ``critic``
    and ``final``."""
    gen = torch.Generator().manual_seed(settings.seed + 1)
    critic = QuadraticCritic.for_problem(prob, settings.critic_degree)
    score = LinearScore.for_problem(prob, settings.score_degree, K0=K0)
    sde = prob.sde()
    # Preconditioners from a pilot batch under the initial score (fixed coordinates for phi, theta).
    z0 = initial_states(settings.n_paths, prob.dim, settings.init_spread, gen)
    pilot = simulate(sde, score, z0, settings.dt, generator=gen)
    critic_precond = feature_preconditioner(critic.features(pilot.t, pilot.z)[:, :-1])
    score_precond = feature_preconditioner(score.features(pilot.t, pilot.z)[:, :-1])
    # The critic's constant is the Ito constant of its P (see fit_critic), with the noise
    # covariance of the pilot batch.
    noise = noise_covariance(pilot)
    rows = []

    def errors(phi_free, score_now):
        phi = critic.ito_constant(phi_free, noise, pilot.discount)
        spread = settings.init_spread
        return phi, compare(prob, critic, phi, score_now, spread, phi_free)

    def record(episode, phi, theta):
        if episode % record_every and episode != settings.n_episodes - 1:
            return
        snapshot = LinearScore.for_problem(prob, settings.score_degree)
        with torch.no_grad():
            snapshot.theta.copy_(theta)
        rows.append({"episode": episode, **errors(phi, snapshot)[1]})

    phi_free, theta = run_online(
        critic, sde, score, settings, critic_precond, score_precond, record, progress
    )
    with torch.no_grad():
        score.theta.copy_(theta)
    phi, final = errors(phi_free, score)
    with torch.no_grad():
        critic.phi.copy_(phi)
    return CQSMRun(pd.DataFrame(rows), score, critic, final)
