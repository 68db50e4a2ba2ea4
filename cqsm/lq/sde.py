"""The augmented controlled system ``z = (x, a)`` and its Euler–Maruyama simulation.

    dX_t = b(t, X_t, a_t) dt + sigma_x dB^X_t,      da_t = Psi(t, X_t, a_t) dt + sigma_a dB^a_t

The action is a state variable; the score ``Psi`` (the policy) only chooses how fast it moves.
Everything is batched over paths in torch (float64 by default) and seeded by a ``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch

__all__ = [
    "AugmentedSDE",
    "Paths",
    "simulate",
    "returns_to_go",
    "trace_sums",
    "accumulate",
    "noise_covariance",
    "euler_log_likelihood_ratio",
    "kl_rate",
]

Score = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
DTYPE = torch.float64


def _tensor(value, dtype=DTYPE) -> torch.Tensor:
    return torch.as_tensor(value, dtype=dtype)


@dataclass(frozen=True)
class AugmentedSDE:
    """The controlled system: drift ``b``, constant noise matrices, rewards and the objective.

    ``drift_x(t, x, a)`` and ``reward(t, x, a)`` act on batches (``x: (N, n)``, ``a: (N, d)``,
    ``t`` a 0-d tensor); ``terminal(x, a)`` is ``h`` (finite horizon) or ``None``. ``lam`` prices
    action speed in the running reward ``r - (lam/2)|Psi|^2``; ``discount`` is ``beta`` per unit
    time.
    """

    n: int
    d: int
    drift_x: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    sigma_x: torch.Tensor
    sigma_a: torch.Tensor
    reward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
    terminal: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None
    lam: float
    horizon: float | None = None
    discount: float = 0.0

    def step(
        self,
        t: torch.Tensor,
        x: torch.Tensor,
        a: torch.Tensor,
        psi: torch.Tensor,
        dt: float,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One Euler–Maruyama step of ``(x, a)`` under the score value ``psi``."""
        root = math.sqrt(dt)
        eps_x = torch.randn(x.shape, generator=generator, dtype=x.dtype)
        eps_a = torch.randn(a.shape, generator=generator, dtype=a.dtype)
        x_next = x + self.drift_x(t, x, a) * dt + root * eps_x @ self.sigma_x.T
        a_next = a + psi * dt + root * eps_a @ self.sigma_a.T
        return x_next, a_next


@dataclass(frozen=True)
class Paths:
    """Simulated paths on the grid ``t_k = t_0 + k dt``, ``k = 0..K``.

    ``x (N, K+1, n)``, ``a (N, K+1, d)``, ``psi (N, K, d)`` (the score applied on
    ``[t_k, t_{k+1})``),
    ``r (N, K)`` (reward rates at ``t_k``), ``terminal (N,)`` (``h(z_K)``, or zeros).
    """

    t: torch.Tensor
    x: torch.Tensor
    a: torch.Tensor
    psi: torch.Tensor
    r: torch.Tensor
    terminal: torch.Tensor
    dt: float
    lam: float
    discount: float
    finite_horizon: bool

    @property
    def z(self) -> torch.Tensor:
        """The augmented state ``(x, a)``, shape ``(N, K+1, n+d)``."""
        return torch.cat([self.x, self.a], dim=-1)

    @property
    def running_reward(self) -> torch.Tensor:
        """``r - (lam/2)|Psi|^2`` on each interval, shape ``(N, K)``."""
        return self.r - 0.5 * self.lam * (self.psi**2).sum(-1)

    @property
    def n_paths(self) -> int:
        return self.x.shape[0]

    @property
    def n_steps(self) -> int:
        return self.psi.shape[1]

    def select(self, index) -> Paths:
        """The paths picked by ``index`` (a slice, mask or index tensor over paths)."""
        return replace(
            self,
            x=self.x[index],
            a=self.a[index],
            psi=self.psi[index],
            r=self.r[index],
            terminal=self.terminal[index],
        )

    def objective(self) -> torch.Tensor:
        """The realised discounted objective of each path from ``t_0``, shape ``(N,)``.

        It is the return to go at ``t_0`` (:func:`returns_to_go`).
        """
        return returns_to_go(self)[:, 0]


def trace_sums(delta: torch.Tensor, kappa: float) -> torch.Tensor:
    """``D_j = sum_{k>=j} kappa^{k-j} delta_k`` along dim 1 (the forward view of a trace).

    The same discounted suffix sum gives the returns to go (``kappa = e^{-beta dt}``).
    """
    out = [delta[:, -1]]
    for k in range(delta.shape[1] - 2, -1, -1):
        out.append(delta[:, k] + kappa * out[-1])
    return torch.stack(out[::-1], 1)


def returns_to_go(paths: Paths) -> torch.Tensor:
    """``G_k = sum_{j>=k} e^{-beta (t_j - t_k)} (r_j - lam/2 |Psi_j|^2) dt + e^{-beta(T-t_k)} h``.

    Shape ``(N, K+1)``; ``G_K = h`` (zero without a terminal reward).
    """
    rewards = torch.cat([paths.running_reward * paths.dt, paths.terminal[:, None]], 1)
    return trace_sums(rewards, math.exp(-paths.discount * paths.dt))


def accumulate(moments, paths: Paths, chunk_size: int = 2048) -> tuple:
    """Sum ``moments(chunk)`` (a tuple of arrays or numbers) over chunks of paths, so that
    memory stays bounded however many paths there are."""
    total = None
    for start in range(0, paths.n_paths, chunk_size):
        part = moments(paths.select(slice(start, start + chunk_size)))
        total = part if total is None else tuple(a + b for a, b in zip(total, part, strict=True))
    return total


def noise_covariance(paths: Paths) -> torch.Tensor:
    """The noise covariance per unit time ``Sigma Sigma^T`` of the paths' increments, from data.

    Each Euler step is ``z_{k+1} - z_k = (calA z_k + calE Psi_k) dt + Sigma sqrt(dt) eps_k``:
    linear in ``(z_k, Psi_k)`` (the LQ dynamics, whose coefficients are not used) up to the noise.
    The least-squares residuals of the increments on ``(z_k, Psi_k)``, pooled over paths and
    steps, estimate the noise: their covariance over ``dt`` (with the degrees of freedom of the
    regression taken out) is unbiased for ``Sigma Sigma^T``. The raw quadratic variation
    ``sum dz dz^T / (K dt)`` is not: its drift part ``|calA z + calE Psi|^2 dt`` is of the size
    of the noise itself at ``dt = 0.01`` when ``|z| ~ 3``. Shape ``(n+d, n+d)``.
    """

    def moments(chunk):
        z = chunk.z
        dz = (z[:, 1:] - z[:, :-1]).reshape(-1, z.shape[-1])
        X = torch.cat([z[:, :-1], chunk.psi], -1).reshape(len(dz), -1)
        return X.T @ X, X.T @ dz, dz.T @ dz, len(dz)

    lhs, rhs, sq, rows = accumulate(moments, paths)
    lhs, rhs, sq = lhs.numpy(), rhs.numpy(), sq.numpy()
    # A constant gain makes Psi a linear function of z: the pseudo-inverse drops that direction.
    scale = np.sqrt(np.diag(lhs))
    inner = np.linalg.pinv(lhs / np.outer(scale, scale), rcond=1e-10, hermitian=True)
    rank = np.linalg.matrix_rank(lhs / np.outer(scale, scale), tol=1e-10, hermitian=True)
    resid = sq - rhs.T @ (inner / np.outer(scale, scale)) @ rhs
    cov = (resid + resid.T) / 2 / ((rows - rank) * paths.dt)
    return torch.from_numpy(cov)


def _check_dt(dt: float) -> float:
    if not isinstance(dt, int | float) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a positive number of time units; got {dt!r}.")
    return float(dt)


def simulate(
    sde: AugmentedSDE,
    score: Score,
    z0: torch.Tensor,
    dt: float,
    n_steps: int | None = None,
    t0: float = 0.0,
    generator: torch.Generator | None = None,
) -> Paths:
    """Simulate ``N`` paths from ``z0 (N, n+d)`` under ``score`` by Euler–Maruyama.

    With a finite horizon the paths run from ``t0`` to the horizon (``(T - t0)/dt`` must be an
    integer); otherwise ``n_steps`` steps. ``score(t, x, a)`` returns ``(N, d)``.
    """
    dt = _check_dt(dt)
    z0 = _tensor(z0)
    if z0.ndim != 2 or z0.shape[1] != sde.n + sde.d:
        raise ValueError(
            f"z0 must have shape (N, n+d) = (N, {sde.n + sde.d}); got {tuple(z0.shape)}."
        )
    if sde.horizon is not None:
        span = (sde.horizon - t0) / dt
        if abs(span - round(span)) > 1e-6 or round(span) < 1:
            raise ValueError(
                f"(horizon - t0) / dt = {span:.6g} must be a positive integer; choose dt to divide "
                f"the horizon {sde.horizon}."
            )
        n_steps = round(span)
    elif n_steps is None or n_steps < 1:
        raise ValueError("A problem without a horizon needs n_steps >= 1.")
    x, a = z0[:, : sde.n], z0[:, sde.n :]
    times = t0 + dt * torch.arange(n_steps + 1, dtype=DTYPE)
    xs, as_, psis, rs = [x], [a], [], []
    with torch.no_grad():
        for k in range(n_steps):
            t = times[k]
            psi = score(t, x, a)
            if psi.shape != a.shape:
                raise ValueError(f"score returned shape {tuple(psi.shape)}, expected {a.shape}.")
            rs.append(sde.reward(t, x, a))
            psis.append(psi)
            x, a = sde.step(t, x, a, psi, dt, generator)
            xs.append(x)
            as_.append(a)
        h = sde.terminal(x, a) if sde.terminal is not None else torch.zeros(len(x), dtype=DTYPE)
    return Paths(
        t=times,
        x=torch.stack(xs, 1),
        a=torch.stack(as_, 1),
        psi=torch.stack(psis, 1),
        r=torch.stack(rs, 1),
        terminal=h,
        dt=dt,
        lam=sde.lam,
        discount=sde.discount,
        finite_horizon=sde.horizon is not None,
    )


def euler_log_likelihood_ratio(paths: Paths, sigma_a: torch.Tensor) -> torch.Tensor:
    """``log dP^Psi/dP^0`` of each path's action increments under the Euler kernel, shape ``(N,)``.

    Step ``k`` moves ``a`` by ``Psi_k dt + sigma_a sqrt(dt) eps`` under the controlled kernel and by
    ``sigma_a sqrt(dt) eps`` under the driftless one; the log ratio of the two Gaussian densities is
    ``Psi^T C^{-1} da - (dt/2) Psi^T C^{-1} Psi`` with ``C = sigma_a sigma_a^T``.
    Its mean over paths is the KL divergence of the action path laws.
    """
    da = paths.a[:, 1:] - paths.a[:, :-1]
    w = paths.psi @ _precision(sigma_a)
    return ((w * da).sum(-1) - 0.5 * paths.dt * (w * paths.psi).sum(-1)).sum(-1)


def kl_rate(psi: torch.Tensor, sigma_a: torch.Tensor) -> torch.Tensor:
    """The Girsanov KL rate ``1/2 Psi^T (sigma_a sigma_a^T)^{-1} Psi`` (per unit time)."""
    return 0.5 * ((psi @ _precision(sigma_a)) * psi).sum(-1)


def _precision(sigma_a: torch.Tensor) -> torch.Tensor:
    """``(sigma_a sigma_a^T)^{-1}``, the precision of the action noise per unit time."""
    return torch.linalg.inv(sigma_a @ sigma_a.T)
