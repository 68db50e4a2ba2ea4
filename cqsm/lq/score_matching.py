"""Policy improvement by Q-score matching.

The HJB supremum ``sup_Psi {Psi . grad_a Q - (lam/2)|Psi|^2}`` is attained at ``grad_a Q / lam``,
so a score is improved by regressing it on the critic's action gradient:

    L(theta) = E_{(t, x, a) ~ D} |Psi_theta(t, x, a) - grad_a Q_phi(t, x, a) / lam|^2,

with ``Q_phi`` held fixed.
"""

from __future__ import annotations

import numpy as np
import torch

from cqsm.lq.scores import LinearScore
from cqsm.lq.sde import Paths

__all__ = ["action_gradient", "score_matching_loss", "fit_linear_score", "improvement_step"]


def action_gradient(critic, t, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """``grad_a Q_phi(t, x, a)`` (no graph kept), shape of ``a``.

    A critic that knows its action gradient in closed form provides ``critic.action_gradient``
    (the quadratic LQ family does; a test checks it against automatic differentiation); any other
    critic is differentiated by autograd.
    """
    if hasattr(critic, "action_gradient"):
        with torch.no_grad():
            return critic.action_gradient(t, x, a)
    with torch.enable_grad():
        a = a.detach().requires_grad_(True)
        q = critic(t, x.detach(), a)
        (grad,) = torch.autograd.grad(q.sum(), a)
    return grad.detach()


def score_matching_loss(score, critic, t, x: torch.Tensor, a: torch.Tensor, lam: float):
    """``mean |Psi_theta - grad_a Q_phi / lam|^2`` over the batch (gradients reach ``score``)."""
    if lam <= 0:
        raise ValueError(f"lam must be positive; got {lam}.")
    target = action_gradient(critic, t, x, a) / lam
    return ((score(t, x, a) - target) ** 2).sum(-1).mean()


def _grid_states(paths: Paths):
    """Times, states and actions at the grid points ``t_0 .. t_{K-1}`` (where scores act)."""
    return paths.t[:-1], paths.x[:, :-1], paths.a[:, :-1]


def fit_linear_score(score: LinearScore, critic, paths: Paths, lam: float) -> LinearScore:
    """Minimise the Q-score-matching loss exactly over a :class:`LinearScore` (least squares).

    The data are the visited ``(t_k, x_k, a_k)``; ``score.theta`` is overwritten in place.
    """
    t, x, a = _grid_states(paths)
    target = action_gradient(critic, t, x, a) / lam  # (N, K, d)
    X = score.features(t, torch.cat([x, a], -1))
    X, Y = X.reshape(-1, X.shape[-1]), target.reshape(-1, target.shape[-1])
    theta_flat = torch.from_numpy(np.linalg.solve((X.T @ X).numpy(), (X.T @ Y).numpy()))
    with torch.no_grad():
        score.theta.copy_(score.unflatten(theta_flat.T))
    return score


def improvement_step(
    score, critic, paths: Paths, lam: float, optimizer: torch.optim.Optimizer, n_steps: int = 1
) -> float:
    """``n_steps`` Q-score-matching gradient steps on the visited states; returns the last loss."""
    t, x, a = _grid_states(paths)
    loss = torch.tensor(float("nan"))
    for _ in range(n_steps):
        optimizer.zero_grad()
        loss = score_matching_loss(score, critic, t, x, a, lam)
        loss.backward()
        optimizer.step()
    return float(loss.detach())
