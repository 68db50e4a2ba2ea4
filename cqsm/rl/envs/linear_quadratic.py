"""An LQ problem of :mod:`cqsm.lq.problem` as a Gymnasium env, to check deep agents exactly.

The env's action is the applied action ``a`` (unbounded ``Box``); wrapped in
:class:`~cqsm.rl.envs.ActionDiffusionWrapper` it becomes the augmented system whose optimal score
and value :meth:`cqsm.lq.problem.LQProblem.optimal` gives in closed form. One step of ``dt``
seconds:

    x_{k+1} = x_k + (A x_k + B a_k) dt + sigma_x sqrt(dt) eps_k,   reward r(x_k, a_k) = -1/2 z^T W z

(a rate: its integral over the step is ``reward * dt``). Episodes start from
``x ~ N(0, x0_std^2 I)`` and are truncated, never terminated, after ``episode_seconds``.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np

from cqsm.lq.problem import LQProblem, example
from cqsm.rl.envs.action_diffusion import ActionDiffusion

__all__ = ["LinearQuadraticEnv"]


class LinearQuadraticEnv(gym.Env):
    """The LQ system with its action applied directly (wrap it to make the action a diffusion).

    Args:
        problem: an :class:`~cqsm.lq.problem.LQProblem`, or the name of one of
            :func:`cqsm.lq.problem.example`.
            Deep agents need the stationary (discounted) kind.
        dt: seconds per step.
        episode_seconds: episode length before truncation.
        x0_std: standard deviation of the initial state.
    """

    metadata = {"render_modes": []}

    def __init__(
        self,
        problem: LQProblem | str = "scalar-discounted",
        dt: float = 0.05,
        episode_seconds: float = 10.0,
        x0_std: float = 1.0,
    ):
        self.problem = example(problem) if isinstance(problem, str) else problem
        if self.problem.horizon is not None:
            raise ValueError(
                "LinearQuadraticEnv needs a stationary problem (horizon=None, discount=beta > 0); "
                f"this one has horizon {self.problem.horizon}. Use e.g. 'scalar-discounted'."
            )
        if not (dt > 0 and math.isfinite(dt)):
            raise ValueError(f"dt must be a positive number of seconds; got {dt!r}.")
        self.dt = float(dt)
        self.max_steps = max(1, round(episode_seconds / dt))
        self.x0_std = float(x0_std)
        p = self.problem
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (p.n,), np.float32)
        self.action_space = gym.spaces.Box(-np.inf, np.inf, (p.d,), np.float32)
        self._x = np.zeros(p.n)
        self._k = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._x = self.x0_std * self.np_random.standard_normal(self.problem.n)
        self._k = 0
        return self._x.astype(np.float32), {}

    def transition(self, x: np.ndarray, a: np.ndarray, eps: np.ndarray):
        """One step for batches ``x (..., n)``, ``a (..., d)`` and noise ``eps (..., n)``;
        returns ``(x_next, reward)``."""
        p = self.problem
        z = np.concatenate([x, a], -1)
        reward = -0.5 * np.einsum("...i,ij,...j->...", z, p.W, z)
        x_next = x + (x @ p.A.T + a @ p.B.T) * self.dt + eps @ p.sigma_x.T * math.sqrt(self.dt)
        return x_next, reward

    def step(self, action):
        a = np.asarray(action, dtype=np.float64).reshape(self.problem.d)
        eps = self.np_random.standard_normal(self.problem.n)
        self._x, reward = self.transition(self._x, a, eps)
        self._k += 1
        truncated = self._k >= self.max_steps
        return self._x.astype(np.float32), float(reward), False, truncated, {}

    def objective(
        self,
        score,
        diffusion: ActionDiffusion,
        seconds: float = 20.0,
        n_paths: int = 2000,
        seed: int = 0,
        rate_scale: float = np.inf,
        visited: list | None = None,
    ) -> tuple[float, float]:
        """Monte-Carlo value of a score from this env's start distribution: mean, standard error.

        Runs ``n_paths`` episodes of ``seconds`` at once in the wrapper's step order (the score
        sees ``(x_k, a_{k-1})``, moves the action, then the env applies it) and sums
        ``e^{-beta t_k} (r_k - (lam/2)|Psi_k|^2) dt`` with the problem's ``lam`` and ``beta``.
        ``score`` maps an ``(N, n + d)`` array of observations to ``(N, d)`` score values. The
        same ``seed`` gives the same noise, so two scores are compared path by path. With
        ``visited`` a list, the observations of every tenth step are appended to it.
        """
        p = self.problem
        rng = np.random.default_rng(seed)
        x = self.x0_std * rng.standard_normal((n_paths, p.n))
        a = np.broadcast_to(diffusion.initial(), (n_paths, p.d)).copy()
        total = np.zeros(n_paths)
        for k in range(round(seconds / diffusion.dt)):
            obs = np.concatenate([x, a], -1)
            if visited is not None and k % 10 == 0:
                visited.append(obs)
            psi = np.clip(score(obs), -rate_scale, rate_scale)
            a = diffusion.move(a, psi, rng.standard_normal((n_paths, p.d)))
            x, reward = self.transition(x, a, rng.standard_normal((n_paths, p.n)))
            running = reward - 0.5 * p.lam * np.sum(psi**2, -1)
            total += math.exp(-p.discount * k * diffusion.dt) * running * diffusion.dt
        return float(total.mean()), float(total.std(ddof=1) / math.sqrt(n_paths))

    def optimal_objective(self) -> float:
        """The closed form ``E[Q*(z_0)] = -1/2 E[z_0^T P z_0] - c`` over the start distribution
        (``x_0 ~ N(0, x0_std^2 I)``, ``a_{-1} = 0``)."""
        sol = self.problem.optimal()
        P, n = sol.P(0.0), self.problem.n
        return float(-0.5 * self.x0_std**2 * np.trace(P[:n, :n]) - sol.c(0.0))
