"""The DDPM action model of the diffusion baselines (Diffusion-QL and QSM).

Actions live in the unit box ``u in [-1, 1]^d`` (see :class:`~cqsm.rl.agents.common.ActionBox`). The
forward process noises an action in ``T`` steps, ``u_t = sqrt(abar_t) u + sqrt(1 - abar_t) eps``,
with the variance-preserving schedule ``beta(s) = b_min + (b_max - b_min) s`` integrated over each
of the ``T`` steps (the schedule both baselines use, with ``T = 5``). A denoiser ``eps_theta(x,
u_t, t)`` predicts the noise, and the sampler runs the reverse chain from ``u_T ~ N(0, I)``,
clipping each predicted clean action to the box.

The denoiser's *score* is ``-eps_theta / sqrt(1 - abar_t)``: a sampler step moves ``u_t`` along
``-eps_theta``, i.e. up the score. QSM trains ``-eps_theta`` toward ``M_q grad_u Q``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cqsm.rl.agents.common import Mish, deep_mlp

__all__ = ["vp_betas", "Denoiser", "DDPM"]


def vp_betas(T: int, b_min: float = 0.1, b_max: float = 10.0) -> torch.Tensor:
    """``beta_t = 1 - exp(-int beta(s) ds)`` over step ``t`` of ``T``, ``beta(s)`` linear."""
    t = torch.arange(1, T + 1, dtype=torch.float64)
    integral = b_min / T + 0.5 * (b_max - b_min) * (2 * t - 1) / T**2
    return (1 - torch.exp(-integral)).float()


class Denoiser(nn.Module):
    """``eps_theta(x, u_t, t)``: a Mish network of the observation, the noisy action and a
    sinusoidal embedding of the step ``t`` passed through a small Mish network."""

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: tuple[int, ...],
        t_dim: int = 16,
        t_hidden: tuple[int, ...] = (32,),
        t_out: int = 16,
    ):
        super().__init__()
        self.t_dim = t_dim
        self.t_net = deep_mlp(t_dim, t_hidden, t_out, activation=Mish)
        self.net = deep_mlp(obs_dim + action_dim + t_out, hidden, action_dim, activation=Mish)

    def embed(self, t: torch.Tensor) -> torch.Tensor:
        half = self.t_dim // 2
        freq = torch.exp(-math.log(10_000.0) * torch.arange(half, dtype=torch.float32) / half)
        angle = t.float().unsqueeze(-1) * freq
        return self.t_net(torch.cat([angle.sin(), angle.cos()], -1))

    def forward(self, x: torch.Tensor, u_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, u_t, self.embed(t)], -1))


class DDPM:
    """The noise schedule, the forward noising and the reverse sampler of ``T`` steps for
    actions of ``d`` dimensions."""

    def __init__(self, T: int, d: int):
        if T < 1:
            raise ValueError(f"A DDPM needs at least one step; got T={T}.")
        self.T, self.d = T, d
        self.betas = vp_betas(T)
        self.alphas = 1 - self.betas
        self.abar = torch.cumprod(self.alphas, 0)
        abar_prev = torch.cat([torch.ones(1), self.abar[:-1]])
        # posterior q(u_{t-1} | u_t, u_0): mean coefficients and variance
        self.coef_u0 = self.betas * abar_prev.sqrt() / (1 - self.abar)
        self.coef_ut = (1 - abar_prev) * self.alphas.sqrt() / (1 - self.abar)
        self.post_std = (self.betas * (1 - abar_prev) / (1 - self.abar)).clamp_min(1e-20).sqrt()

    def noise(self, u0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """``u_t = sqrt(abar_t) u_0 + sqrt(1 - abar_t) eps`` for integer steps ``t`` (0-based)."""
        abar = self.abar[t].unsqueeze(-1)
        return abar.sqrt() * u0 + (1 - abar).sqrt() * eps

    def sample(self, denoiser: Denoiser, x: torch.Tensor) -> torch.Tensor:
        """Unit-box actions for a batch of observations, by the reverse chain (differentiable
        through ``denoiser``; wrap in ``torch.no_grad()`` when acting)."""
        u = torch.randn(x.shape[0], self.d)
        for t in reversed(range(self.T)):
            step = torch.full((x.shape[0],), t, dtype=torch.long)
            eps = denoiser(x, u, step)
            abar = self.abar[t]
            u0 = ((u - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
            u = self.coef_u0[t] * u0 + self.coef_ut[t] * u
            if t > 0:
                u = u + self.post_std[t] * torch.randn_like(u)
        return u.clamp(-1, 1)
