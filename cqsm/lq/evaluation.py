"""Iterative policy evaluation on LQ problems: martingale loss, orthogonality, MSTDE compared.

Each method moves the parameters ``phi`` of a critic that is linear in them
(:class:`cqsm.lq.critics.QuadraticCritic`). All gradient-type methods share one preconditioner, the
inverse second moment of the features on the data (a fixed linear change of coordinates that makes
``phi`` well conditioned), so that learning rates are dimensionless. The stable range still differs
by method (chapter 4 measures it: the martingale loss takes steps near 1, TD(0) about a tenth of
that, a long eligibility trace less again):

* offline (a fixed set of paths, one full pass per iteration): the martingale loss (gradient
  descent), the orthogonality conditions with test function ``dQ/dphi`` (TD(0)) or its eligibility
  trace (TD(lambda)), and the mean squared TD error (gradient descent); the LSTD-type direct solve
  of the same moment equations gives the iteration's fixed point in one step;
* online (fresh paths, one update per time step and path batch): TD(0) and TD(lambda), optionally
  with the score updated alongside by Q-score matching (online CQSM, :mod:`cqsm.lq.cqsm`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cqsm.lq import martingale as mg
from cqsm.lq.critics import QuadraticCritic
from cqsm.lq.score_matching import action_gradient
from cqsm.lq.sde import DTYPE, AugmentedSDE, Paths

__all__ = [
    "OFFLINE_METHODS",
    "EvaluationSettings",
    "feature_preconditioner",
    "offline_direction",
    "iterate_offline",
    "OnlineSettings",
    "run_online",
    "relative_error",
    "initial_states",
    "seed_summary",
    "rate_summary",
]

OFFLINE_METHODS = ("martingale loss", "TD(0)", "TD(lambda)", "mean squared TD error")


@dataclass(frozen=True)
class EvaluationSettings:
    """Offline policy evaluation of a fixed linear score on an LQ problem (chapter 4)."""

    n_paths: int = 4000
    """Number of simulated paths in the data set."""
    dt: float = 0.01
    """Time step of the Euler–Maruyama grid (time units)."""
    n_iterations: int = 200
    """Full passes over the data set."""
    lr: float = 0.05
    """Learning rate of the preconditioned updates (dimensionless; stable for every method here)."""
    trace_rate: float = 5.0
    """Eligibility-trace decay rate eta of TD(lambda), per time unit."""
    critic_degree: int = 4
    """Degree of the time polynomials of the critic family."""
    init_spread: float = 1.0
    """Initial states z_0 ~ N(0, init_spread^2 I)."""
    seed: int = 0
    """Seed of the simulation."""


def initial_states(n_paths: int, dim: int, spread: float, generator: torch.Generator):
    """``z_0 ~ N(0, spread^2 I)``, shape ``(n_paths, dim)``."""
    return spread * torch.randn(n_paths, dim, generator=generator, dtype=DTYPE)


def feature_preconditioner(features: torch.Tensor, ridge: float = 1e-8) -> torch.Tensor:
    """``(E f f^T + ridge I)^{-1}`` over the rows of ``features`` (the last axis is the feature)."""
    f = features.reshape(-1, features.shape[-1])
    C = (f.T @ f / len(f)).numpy()
    return torch.from_numpy(np.linalg.inv(C + ridge * np.trace(C) / len(C) * np.eye(len(C))))


def _duration(paths: Paths) -> float:
    return paths.n_steps * paths.dt


def offline_direction(
    critic: QuadraticCritic, paths: Paths, method: str, trace_rate: float = 5.0
) -> torch.Tensor:
    """The update direction of ``method`` at the critic's current ``phi`` (per unit time).

    Minus the gradient of the loss for the martingale loss and (half) the mean squared TD error,
    the orthogonality residual
    ``E sum_k xi_k delta_k`` for TD(0) / TD(lambda).
    """
    critic.zero_grad()
    q = mg.critic_on_grid(critic, paths)
    if method == "martingale loss":
        objective = mg.martingale_loss(q, paths)
    elif method == "mean squared TD error":
        objective = 0.5 * mg.mean_squared_td_error(q, paths)
    elif method in ("TD(0)", "TD(lambda)"):
        rate = None if method == "TD(0)" else trace_rate
        objective = mg.orthogonality_surrogate(q, paths, rate)
    else:
        raise ValueError(f"Unknown method {method!r}; choose one of {OFFLINE_METHODS}.")
    objective.backward()
    return -critic.phi.grad.detach() / _duration(paths)


def iterate_offline(
    critic: QuadraticCritic,
    paths: Paths,
    method: str,
    lr: float,
    n_iterations: int,
    precond: torch.Tensor,
    trace_rate: float = 5.0,
) -> list[torch.Tensor]:
    """Iterate ``phi <- phi + lr * precond @ direction``; returns every ``phi``."""
    history = [critic.phi.detach().clone()]
    for _ in range(n_iterations):
        step = precond @ offline_direction(critic, paths, method, trace_rate)
        with torch.no_grad():
            critic.phi += lr * step
        if not torch.all(torch.isfinite(critic.phi)):
            raise FloatingPointError(
                f"{method} diverged at lr={lr}: the parameters became non-finite. Lower the "
                "learning rate."
            )
        history.append(critic.phi.detach().clone())
    return history


def relative_l2(learned, exact, horizon: float | None, n_times: int = 21) -> float:
    """``||learned - exact|| / ||exact||`` in ``L2([0, T])`` on ``n_times`` equispaced times.

    ``learned`` and ``exact`` map a time to an array (or a number); stationary: at ``t = 0``.
    Infinite where the squared difference overflows (a fit that diverged).
    """
    ts = [0.0] if horizon is None else np.linspace(0.0, horizon, n_times)
    pairs = [(np.asarray(learned(t)), np.asarray(exact(t))) for t in ts]
    with np.errstate(over="ignore"):
        num = sum(np.sum((a - b) ** 2) for a, b in pairs)
    den = sum(np.sum(b**2) for _, b in pairs)
    return math.sqrt(num / max(den, 1e-300))


def relative_error(critic: QuadraticCritic, phi: torch.Tensor, solution, n_times: int = 21):
    """Relative L2-in-time errors of ``P_phi`` and ``c_phi`` against ``solution``: ``(eP, ec)``."""
    horizon = critic.horizon
    eP = relative_l2(lambda t: critic.P(t, phi), solution.P, horizon, n_times)
    ec = relative_l2(lambda t: critic.c(t, phi), solution.c, horizon, n_times)
    return eP, ec


# --------------------------------------------------------------------------- online
@dataclass(frozen=True)
class OnlineSettings:
    """Online learning: one update per time step on a batch of paths simulated as we go."""

    n_paths: int = 256
    """Paths simulated side by side (the batch of each per-step update)."""
    dt: float = 0.01
    """Time step (time units)."""
    n_episodes: int = 200
    """Episodes (each a pass from t = 0 to the horizon)."""
    lr: float = 0.3
    """Critic learning rate (per episode, preconditioned)."""
    lr_halflife: float = 50.0
    """Learning rates decay as 1 / (1 + episode / lr_halflife)."""
    score_lr: float = 0.0
    """Score learning rate (per episode, preconditioned); 0 keeps the score fixed."""
    trace_rate: float | None = None
    """Eligibility-trace decay rate eta (None: TD(0))."""
    average_from: float = 0.5
    """Report the Polyak average of the parameters over episodes after this fraction."""
    critic_degree: int = 4
    """Degree of the critic's time polynomials."""
    score_degree: int = 4
    """Degree of the score's time polynomials."""
    init_spread: float = 1.0
    """Initial states z_0 ~ N(0, init_spread^2 I)."""
    seed: int = 0
    """Seed."""


def run_online(
    critic: QuadraticCritic,
    sde: AugmentedSDE,
    score,
    settings: OnlineSettings,
    critic_precond: torch.Tensor,
    score_precond: torch.Tensor | None = None,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
    progress: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Online martingale orthogonality (TD(0) / TD(lambda)), with Q-score matching alongside.

    At each grid time and for the batch of paths: apply ``Psi_theta``, step the SDE, form
    ``delta_k``, update ``phi += lr/T * precond @ mean(xi_k delta_k)``; if ``score_lr > 0``, move
    the score (a :class:`cqsm.lq.scores.LinearScore`) by a preconditioned step on
    ``|Psi_theta - grad_a Q_phi / lam|^2``. Returns the Polyak averages ``(phi, theta)``;
    ``callback(episode, phi, theta)`` sees the running parameters after each episode.
    """
    gen = torch.Generator().manual_seed(settings.seed)
    dt, lam = settings.dt, sde.lam
    horizon = sde.horizon
    if horizon is None:
        raise ValueError("run_online needs a finite-horizon problem.")
    n_steps = round(horizon / dt)
    disc = math.exp(-sde.discount * dt)
    kappa = mg.trace_decay(sde.discount, dt, settings.trace_rate)
    start_avg = int(settings.average_from * settings.n_episodes)
    phi_sum, theta_sum, n_avg = torch.zeros_like(critic.phi), torch.zeros_like(score.theta), 0
    episodes = range(settings.n_episodes)
    if progress:
        from tqdm import tqdm

        episodes = tqdm(episodes, desc="episodes")
    for episode in episodes:
        decay = 1.0 / (1.0 + episode / settings.lr_halflife)
        lr_c, lr_s = settings.lr * decay / horizon, settings.score_lr * decay / horizon
        z = initial_states(settings.n_paths, sde.n + sde.d, settings.init_spread, gen)
        x, a = z[:, : sde.n], z[:, sde.n :]
        trace = torch.zeros(settings.n_paths, len(critic.phi), dtype=DTYPE)
        for k in range(n_steps):
            t, t1 = k * dt, (k + 1) * dt
            with torch.no_grad():
                psi = score(t, x, a)
                r = sde.reward(t, x, a)
            x1, a1 = sde.step(torch.tensor(t), x, a, psi, dt, gen)
            z, z1 = torch.cat([x, a], -1), torch.cat([x1, a1], -1)
            if k == 0:
                f, b = critic.features(t, z), critic.base(t, z)
            with torch.no_grad():
                q = b + f @ critic.phi
                if k == n_steps - 1:
                    f1, b1 = None, None
                    q1 = sde.terminal(x1, a1)
                else:
                    f1, b1 = critic.features(t1, z1), critic.base(t1, z1)
                    q1 = b1 + f1 @ critic.phi
                delta = disc * q1 - q + (r - 0.5 * lam * (psi**2).sum(-1)) * dt
                trace = kappa * trace + f
                critic.phi += lr_c * critic_precond @ (trace * delta[:, None]).mean(0)
            if lr_s > 0:
                target = action_gradient(critic, t, x, a) / lam
                with torch.no_grad():
                    resid = target - psi  # (N, d); theta has not moved since psi
                    g = score.features(t, z)  # (N, m*dim)
                    step = (resid[:, :, None] * g[:, None, :]).mean(0) @ score_precond  # (d, m*dim)
                    score.theta += lr_s * dt * score.unflatten(step)
            x, a, f, b = x1, a1, f1, b1
        if not (torch.all(torch.isfinite(critic.phi)) and torch.all(torch.isfinite(score.theta))):
            raise FloatingPointError(
                f"Online learning diverged in episode {episode}: lower lr or score_lr."
            )
        if episode >= start_avg:
            phi_sum += critic.phi.detach()
            theta_sum += score.theta.detach()
            n_avg += 1
        if callback is not None:
            callback(episode, critic.phi.detach().clone(), score.theta.detach().clone())
    return phi_sum / max(n_avg, 1), theta_sum / max(n_avg, 1)


def _geometric_mean(errors) -> float:
    return float(np.exp(np.log(np.asarray(errors, dtype=float)).mean()))


def seed_summary(errors: pd.DataFrame, by: str, quantities=("error P", "error c")) -> pd.DataFrame:
    """The seeds' relative errors summarised per ``method`` and value of the column ``by``: for
    each of ``quantities``, the geometric mean over seeds (``mean``: relative errors spread over
    decades), the central 95% of the seeds' errors (``low``, ``high``: their 2.5th and 97.5th
    percentiles) and ``n_seeds``; one row per method, value and quantity."""
    rows = []
    for (method, x), d in errors.groupby(["method", by]):
        for q in quantities:
            e = d[q].to_numpy()
            low, high = np.percentile(e, [2.5, 97.5])
            rows.append(
                {"method": method, by: x, "quantity": q, "mean": _geometric_mean(e)}
                | {"low": low, "high": high, "n_seeds": len(e)}
            )
    return pd.DataFrame(rows)


def rate_summary(online: pd.DataFrame, quantity: str) -> pd.DataFrame:
    """Online runs summarised per ``test function`` and learning rate ``lr`` (in the order they
    come): the geometric mean over seeds of ``quantity`` and its range over seeds (``geometric
    mean``, ``low``, ``high``: NaN where a seed diverged), its plain mean over the seeds with a
    value (``mean``), and how many seeds ``diverged``."""
    rows = []
    for (name, lr), d in online.groupby(["test function", "lr"], sort=False):
        ok = d["diverged"].sum() == 0
        values = d[quantity]
        rows.append(
            {
                "test function": name,
                "lr": lr,
                "geometric mean": _geometric_mean(values) if ok else np.nan,
                "low": values.min() if ok else np.nan,
                "high": values.max() if ok else np.nan,
                "mean": values.mean(),
                "diverged": int(d["diverged"].sum()),
            }
        )
    return pd.DataFrame(rows).set_index(["test function", "lr"])
