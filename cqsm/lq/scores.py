"""Scores ``Psi_theta(t, x, a)``: the drift of the action diffusion, i.e. the policy.

``LinearScore`` is the LQ family ``Psi = K_theta(t) z`` (time-polynomial gains); ``MLPScore`` is a
torch network. Both are called as ``score(t, x, a)`` and return ``(..., d)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from cqsm.lq.critics import TimeBasis, tanh_mlp
from cqsm.lq.sde import DTYPE

__all__ = ["LinearScore", "MLPScore"]


class LinearScore(nn.Module):
    """``Psi_theta(t, z) = K_theta(t) z`` with ``K_theta(t) = sum_j phi_j(t) K_j``.

    ``phi_j`` are polynomials of degree ``<= degree`` in time (a constant for stationary
    problems). ``theta`` stacks the ``d x (n+d)`` matrices ``K_j``.
    """

    def __init__(self, n: int, d: int, horizon: float | None, degree: int = 4, K0=None):
        super().__init__()
        self.n, self.d, self.dim, self.horizon = n, d, n + d, horizon
        self.basis = TimeBasis(degree, horizon, vanish_at_horizon=False)
        self.theta = nn.Parameter(torch.zeros(self.basis.size, d, n + d, dtype=DTYPE))
        if K0 is not None:
            self.set_constant_gain(K0)

    @classmethod
    def for_problem(cls, prob, degree: int = 4, K0=None) -> LinearScore:
        return cls(prob.n, prob.d, prob.horizon, degree, K0)

    def set_constant_gain(self, K) -> None:
        """Set ``K_theta(t) = K`` for all ``t``."""
        K = torch.as_tensor(np.asarray(K, dtype=float), dtype=DTYPE)
        if K.shape != (self.d, self.dim):
            raise ValueError(f"K must have shape ({self.d}, {self.dim}); got {tuple(K.shape)}.")
        # Coordinates w of the constant function 1 in the basis (it holds tau^0): basis(t) w = 1.
        ts = torch.linspace(0, self.horizon or 1.0, self.basis.size + 3, dtype=DTYPE)
        w = np.linalg.lstsq(self.basis(ts).numpy(), np.ones(len(ts)), rcond=None)[0]
        with torch.no_grad():
            self.theta.copy_(torch.from_numpy(w)[:, None, None] * K)

    def features(self, t, z: torch.Tensor) -> torch.Tensor:
        """``d Psi_i / d theta_i = phi_j(t) z_l``, flattened over ``(j, l)``: ``(..., m*dim)``.

        ``Psi_theta(t, z)_i = features(t, z) . theta_flat[i]`` with ``theta_flat`` as in
        :meth:`unflatten`; ``t`` broadcasts over the batch of ``z``.
        """
        w = self.basis(t)
        return (w[..., :, None] * z[..., None, :]).flatten(-2)

    def unflatten(self, theta_flat: torch.Tensor) -> torch.Tensor:
        """``(d, m*dim)`` coefficients on :meth:`features` as a tensor shaped like ``theta``."""
        return theta_flat.reshape(self.d, self.basis.size, self.dim).transpose(0, 1)

    def gain(self, t=0.0) -> np.ndarray:
        """``K_theta(t)`` as a numpy array."""
        return self.gain_function()(float(t))

    def gain_function(self):
        """``t -> K_theta(t)`` (a frozen numpy copy), for
        :meth:`cqsm.lq.problem.LQProblem.evaluate`."""
        theta = self.theta.detach().numpy().copy()
        powers, coef = self.basis.powers.numpy(), self.basis.coef.numpy()
        if self.horizon is None:
            return lambda t: theta[0]
        horizon = self.horizon
        return lambda t: np.tensordot(coef @ ((horizon - t) / horizon) ** powers, theta, 1)

    def forward(self, t, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        z = torch.cat([x, a], -1)
        K = torch.einsum("...j,jkl->...kl", self.basis(t), self.theta)  # t broadcasts over z
        return (K @ z[..., None]).squeeze(-1)


class MLPScore(nn.Module):
    """A torch MLP score ``Psi_theta(t, x, a)`` (time is an input only with a finite horizon)."""

    def __init__(self, n: int, d: int, hidden=(64, 64), horizon: float | None = None):
        super().__init__()
        self.n, self.d, self.horizon = n, d, horizon
        self.net = tanh_mlp(n + d + (horizon is not None), hidden, d)

    def forward(self, t, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        inputs = [x, a]
        if self.horizon is not None:
            t = torch.as_tensor(t, dtype=x.dtype).expand(x.shape[:-1])
            inputs.insert(0, ((self.horizon - t) / self.horizon)[..., None])
        return self.net(torch.cat(inputs, -1))
