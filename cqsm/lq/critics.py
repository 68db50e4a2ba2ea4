"""Critics ``Q_phi(t, x, a)``: the quadratic LQ family (linear in ``phi``) and torch MLPs.

Every critic is a ``torch.nn.Module`` called as ``critic(t, x, a)`` with ``t`` broadcastable to
``x.shape[:-1]`` and returning ``Q`` of shape ``x.shape[:-1]``. A finite-horizon critic satisfies
the terminal condition ``Q(T, .) = h`` by construction, as the martingale characterisation requires.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cqsm.lq.sde import DTYPE

__all__ = ["TimeBasis", "QuadraticCritic", "MLPCritic", "tanh_mlp"]


def tanh_mlp(n_in: int, hidden, n_out: int) -> nn.Sequential:
    """A tanh multilayer perceptron in float64 (the networks of the LQ chapters)."""
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h, dtype=DTYPE), nn.Tanh()]
        width = h
    layers.append(nn.Linear(width, n_out, dtype=DTYPE))
    return nn.Sequential(*layers)


class TimeBasis(nn.Module):
    """Polynomials in ``tau = (T - t)/T``, orthonormal on ``[0, T]`` under the uniform measure.

    With ``vanish_at_horizon`` the powers are ``tau^1..tau^degree`` (all zero at ``t = T``),
    otherwise ``tau^0..tau^degree``. Without a horizon (stationary problems) the basis is ``{1}``.
    """

    def __init__(self, degree: int, horizon: float | None, vanish_at_horizon: bool = True):
        super().__init__()
        if degree < 0 or (vanish_at_horizon and horizon is not None and degree < 1):
            raise ValueError(f"degree must be >= 1 (>= 0 without vanishing); got {degree}.")
        self.horizon = horizon
        powers = (
            [0] if horizon is None else list(range(0 if not vanish_at_horizon else 1, degree + 1))
        )
        p = np.array(powers, dtype=float)
        gram = 1.0 / (p[:, None] + p[None, :] + 1.0)
        coef = np.linalg.inv(np.linalg.cholesky(gram))
        self.register_buffer("powers", torch.tensor(powers, dtype=DTYPE))
        self.register_buffer("coef", torch.tensor(coef, dtype=DTYPE))

    @property
    def size(self) -> int:
        return len(self.powers)

    def forward(self, t) -> torch.Tensor:
        t = torch.as_tensor(t, dtype=DTYPE)
        if self.horizon is None:
            return torch.ones((*t.shape, 1), dtype=DTYPE)
        tau = (self.horizon - t) / self.horizon
        return (tau[..., None] ** self.powers) @ self.coef.T


class QuadraticCritic(nn.Module):
    """``Q_phi(t, z) = -1/2 z^T P_phi(t) z - c_phi(t)``, with ``P_phi = G + sum_j phi_j(t) S_j``.

    ``phi_j(t)`` is a :class:`TimeBasis` that vanishes at ``T`` (so ``Q_phi(T, .) = h``); the
    parameter vector ``phi`` holds the upper triangles of the symmetric ``S_j`` and the ``c_j``, and
    ``Q_phi = base(z) + phi . features(t, z)`` is linear in it. For a stationary problem ``P`` and
    ``c`` are constant (``G`` is absent).
    """

    def __init__(self, n: int, d: int, horizon: float | None, G=None, degree: int = 4):
        super().__init__()
        self.n, self.d, self.dim = n, d, n + d
        self.horizon = horizon
        self.basis = TimeBasis(degree, horizon, vanish_at_horizon=True)
        G = np.zeros((self.dim, self.dim)) if G is None else np.asarray(G, dtype=float)
        self.register_buffer("G", torch.tensor(G, dtype=DTYPE))
        iu = torch.triu_indices(self.dim, self.dim)
        self.register_buffer("iu", iu)
        self.register_buffer("pair_weight", torch.where(iu[0] == iu[1], 0.5, 1.0).to(DTYPE))
        self.n_quadratic = iu.shape[1]
        self.phi = nn.Parameter(torch.zeros(self.basis.size * (self.n_quadratic + 1), dtype=DTYPE))

    @classmethod
    def for_problem(cls, prob, degree: int = 4) -> QuadraticCritic:
        """The family for an :class:`~cqsm.lq.problem.LQProblem` (its dimensions, horizon and
        ``G``)."""
        return cls(prob.n, prob.d, prob.horizon, prob.G, degree)

    # --------------------------------------------------------------- linear structure
    def base(self, t, z: torch.Tensor) -> torch.Tensor:
        """The fixed part ``-1/2 z^T G z`` (the terminal reward ``h``)."""
        return -0.5 * torch.einsum("...i,ij,...j->...", z, self.G, z)

    def features(self, t, z: torch.Tensor) -> torch.Tensor:
        """``d Q_phi / d phi`` at ``(t, z)``, shape ``(..., len(phi))``."""
        quad = z[..., self.iu[0]] * z[..., self.iu[1]] * self.pair_weight
        per_basis = torch.cat([quad, torch.ones_like(quad[..., :1])], -1)
        out = self.basis(t)[..., :, None] * per_basis[..., None, :]  # t broadcasts over the batch
        return -out.flatten(-2)

    def forward(self, t, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, a], -1)
        return self.base(t, z) + self.features(t, z) @ self.phi

    def action_gradient(self, t, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``grad_a Q_phi = -(P_phi(t) z)_a`` in closed form (no autograd), shape of ``a``."""
        P = self._P(t)
        z = torch.cat([x, a], -1)
        return -(P[..., self.n :, :] @ z[..., None]).squeeze(-1)

    # --------------------------------------------------------------- read-outs
    def _split(self, phi: torch.Tensor | None = None):
        phi = self.phi if phi is None else phi
        blocks = phi.detach().reshape(self.basis.size, self.n_quadratic + 1)
        S = torch.zeros(self.basis.size, self.dim, self.dim, dtype=DTYPE)
        S[:, self.iu[0], self.iu[1]] = blocks[:, :-1]
        S = S + S.transpose(1, 2) - torch.diag_embed(torch.diagonal(S, dim1=1, dim2=2))
        return S, blocks[:, -1]

    def _P(self, t, phi: torch.Tensor | None = None) -> torch.Tensor:
        """``P_phi(t)`` (detached), with ``t`` of any shape: ``(*t.shape, dim, dim)``."""
        S, _ = self._split(phi)
        return self.G + torch.einsum("...j,jkl->...kl", self.basis(t), S)

    def P(self, t=0.0, phi: torch.Tensor | None = None) -> np.ndarray:
        """``P_phi(t)`` as a numpy array."""
        return self._P(float(t), phi).numpy()

    def c(self, t=0.0, phi: torch.Tensor | None = None) -> float:
        """``c_phi(t)``."""
        _, c = self._split(phi)
        return float(self.basis(torch.as_tensor(float(t), dtype=DTYPE)) @ c)

    def ito_constant(
        self, phi: torch.Tensor, noise_cov, discount: float = 0.0, n_nodes: int = 64
    ) -> torch.Tensor:
        """``phi`` with its constant replaced by the one its ``P_phi`` implies (Ito's formula).

        For a quadratic Q-function of a linear score under additive noise ``Sigma dB``, the
        part of the martingale condition that does not depend on ``z`` is
        ``-c' + beta c = 1/2 tr(Sigma Sigma^T P)`` with ``c(T) = 0``, so

            c(t) = int_t^T e^{-beta (s - t)} 1/2 tr(Sigma Sigma^T P(s)) ds

        (stationary: ``c = tr(Sigma Sigma^T P) / (2 beta)``): ``c`` is not a free function but a
        read-out of ``P`` and the noise. Fitted freely, ``c_phi`` is the mean of the returns
        left after the quadratic part, and that mean carries the martingale noise
        ``int grad Q . Sigma dB``, whose size grows with ``|z|``: from ``z_0 ~ N(0, 3^2 I)`` and
        16000 paths its standard error is about 18% of ``c`` on both problems of chapter 5
        (6% from ``N(0, I)``), where ``P_phi`` is within 1%. Tied to ``P_phi`` it inherits
        ``P_phi``'s accuracy.
        ``noise_cov`` is ``Sigma Sigma^T`` (from data: :func:`cqsm.lq.sde.noise_covariance`);
        the result is the L2-in-time projection of this ``c`` on the critic's time basis (``P_phi``
        unchanged).
        """
        C = np.asarray(noise_cov, dtype=float)
        S, _ = self._split(phi)
        trace_S = np.einsum("kl,jlk->j", C, S.numpy())  # tr(C S_j)
        trace_G = float(np.trace(C @ self.G.numpy()))
        if self.horizon is None:
            if discount <= 0:
                raise ValueError("A stationary critic's constant needs a discount rate > 0.")
            basis_nodes, weights = self.basis(0.0).numpy()[None], np.ones(1)
            cs = 0.5 * (trace_G + basis_nodes @ trace_S) / discount
        else:
            nodes, w = np.polynomial.legendre.leggauss(n_nodes)
            ts, weights = 0.5 * self.horizon * (nodes + 1), 0.5 * w
            basis_nodes = self.basis(torch.tensor(ts, dtype=DTYPE)).numpy()
            cs = np.empty(n_nodes)
            for q, t in enumerate(ts):  # Gauss-Legendre on [t, T]: exact to rounding here
                ss = t + 0.5 * (self.horizon - t) * (nodes + 1)
                rate = trace_G + self.basis(torch.tensor(ss, dtype=DTYPE)).numpy() @ trace_S
                kernel = np.exp(-discount * (ss - t))
                cs[q] = 0.5 * (self.horizon - t) * np.sum(w * kernel * 0.5 * rate)
        c_coef = np.einsum("q,qj,q->j", weights, basis_nodes, cs)
        blocks = phi.detach().reshape(self.basis.size, self.n_quadratic + 1).clone()
        blocks[:, -1] = torch.from_numpy(c_coef)
        return blocks.reshape(-1)

    def project(self, solution, n_nodes: int = 64) -> torch.Tensor:
        """The parameters of the member of this family closest (L2 in time) to ``solution``.

        ``solution`` has ``P(t)`` and ``c(t)`` (an :class:`cqsm.lq.problem.LQSolution`). These are
        the exact values that learned parameters are compared with.
        """
        if self.horizon is None:
            ts, ws = np.array([0.0]), np.array([1.0])
        else:
            nodes, weights = np.polynomial.legendre.leggauss(n_nodes)
            ts, ws = 0.5 * self.horizon * (nodes + 1), 0.5 * weights
        Ps = np.stack([solution.P(t) for t in ts]) - self.G.numpy()
        cs = np.array([solution.c(t) for t in ts])
        B = self.basis(torch.tensor(ts, dtype=DTYPE)).numpy()  # (nodes, m)
        S = np.einsum("q,qj,qkl->jkl", ws, B, Ps)
        c = np.einsum("q,qj,q->j", ws, B, cs)
        iu = self.iu.numpy()
        blocks = np.concatenate([S[:, iu[0], iu[1]], c[:, None]], 1)
        return torch.tensor(blocks.ravel(), dtype=DTYPE)


class MLPCritic(nn.Module):
    """A torch MLP critic ``Q_phi(t, x, a)``.

    Finite horizon: ``Q_phi = h(x, a) + ((T - t)/T) net(t, x, a)`` so that ``Q_phi(T, .) = h``.
    Stationary: ``Q_phi = net(x, a)``.
    """

    def __init__(
        self, n: int, d: int, hidden=(64, 64), horizon: float | None = None, terminal=None
    ):
        super().__init__()
        self.n, self.d, self.horizon, self.terminal = n, d, horizon, terminal
        self.net = tanh_mlp(n + d + (horizon is not None), hidden, 1)

    def forward(self, t, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        if self.horizon is None:
            return self.net(torch.cat([x, a], -1)).squeeze(-1)
        t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[:-1])
        tau = (self.horizon - t) / self.horizon
        out = tau * self.net(torch.cat([tau[..., None], x, a], -1)).squeeze(-1)
        if self.terminal is not None:
            out = out + self.terminal(x, a)
        return out
