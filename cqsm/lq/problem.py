"""Linear-quadratic (LQ) problems with a diffusing action: closed forms.

The augmented state is ``z = (x, a)`` with

    dX = (A X + B a) dt + sigma_x dB^X,      da = Psi dt + sigma_a dB^a,

reward ``r = -1/2 z^T W z`` with ``W = [[M, R], [R^T, N]]`` and terminal reward
``h = -1/2 z^T G z``.
With ``calA = [[A, B], [0, 0]]``, ``calE = [0; I_d]`` and ``Sigma = diag(sigma_x, sigma_a)``:

    Q*(t, z) = -1/2 z^T P(t) z - c(t)
    -dP/dt = calA^T P + P calA - (1/lam) P calE calE^T P + W,    P(T) = G
    -dc/dt = 1/2 tr(Sigma Sigma^T P),                            c(T) = 0
    Psi*(t, z) = K(t) z,  K(t) = -(1/lam) calE^T P(t).

A linear score ``Psi = K z`` is evaluated by the Lyapunov equation
``-dP_K/dt = (calA + calE K)^T P_K + P_K (calA + calE K) + W + lam K^T K``.
With a discount rate ``beta`` and no horizon, the stationary (algebraic) versions hold with
``calA - (beta/2) I`` in place of ``calA`` and ``c = tr(Sigma Sigma^T P) / (2 beta)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.integrate
import scipy.linalg
import torch

from cqsm.lq.sde import DTYPE, AugmentedSDE

__all__ = [
    "LQError",
    "LQProblem",
    "LQSolution",
    "ConventionalLQ",
    "FeedbackValue",
    "example",
]

Gain = np.ndarray | Callable[[float], np.ndarray]


class LQError(ValueError):
    """An LQ problem or score that is malformed or has no finite solution."""


def _matrix(value, shape: tuple[int, int], name: str) -> np.ndarray:
    """``value`` as a float matrix of ``shape``; a scalar is accepted for a 1x1 matrix."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0 and shape == (1, 1):
        arr = arr.reshape(1, 1)
    if arr.shape != shape:
        raise LQError(
            f"{name} has shape {arr.shape}, expected {shape}. "
            f"Pass a {shape[0]}x{shape[1]} array (a scalar is accepted only for 1x1)."
        )
    if not np.all(np.isfinite(arr)):
        raise LQError(f"{name} contains non-finite entries: {arr}.")
    return arr


def _noise(value, size: int, name: str) -> np.ndarray:
    """A diffusion matrix: a scalar is ``value * I``, a vector a diagonal, else square."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = float(arr) * np.eye(size)
    elif arr.ndim == 1:
        if arr.shape != (size,):
            raise LQError(f"{name} has shape {arr.shape}, expected ({size},) as a diagonal.")
        arr = np.diag(arr)
    return _matrix(arr, (size, size), name)


def _psd(mat: np.ndarray, name: str, tol: float = 1e-10) -> np.ndarray:
    if not np.allclose(mat, mat.T, atol=tol * max(1.0, np.abs(mat).max())):
        raise LQError(f"{name} must be symmetric; got {mat}. Symmetrise it, e.g. (W + W.T) / 2.")
    mat = (mat + mat.T) / 2
    low = np.linalg.eigvalsh(mat).min() if mat.size else 0.0
    if low < -tol * max(1.0, np.abs(mat).max()):
        raise LQError(
            f"{name} must be positive semi-definite (a reward -1/2 z^T W z that is bounded above); "
            f"its smallest eigenvalue is {low:.3g}."
        )
    return mat


@dataclass(frozen=True)
class LQSolution:
    """The quadratic Q-function ``Q(t, z) = -1/2 z^T P(t) z - c(t)`` of a linear score.

    ``gain(t)`` is the gain ``K(t)`` of the score that this Q evaluates (for ``prob.optimal()`` the
    optimal gain), and ``greedy_gain(t) = -(1/lam) calE^T P(t)`` the Q-score-matching target
    ``grad_a Q / lam``. Stationary solutions ignore ``t``.
    """

    problem: LQProblem
    _P: Callable[[float], np.ndarray]
    _c: Callable[[float], float]
    _gain: Callable[[float], np.ndarray]

    def P(self, t: float | None = None) -> np.ndarray:
        """The ``(n+d) x (n+d)`` matrix ``P(t)``."""
        return self._P(self.problem._time(t))

    def c(self, t: float | None = None) -> float:
        """The constant ``c(t)`` of the value."""
        return float(self._c(self.problem._time(t)))

    def gain(self, t: float | None = None) -> np.ndarray:
        """The ``d x (n+d)`` gain ``K(t)`` of the evaluated score ``Psi = K z``."""
        return self._gain(self.problem._time(t))

    def greedy_gain(self, t: float | None = None) -> np.ndarray:
        """``-(1/lam) calE^T P(t)``: the gain of ``grad_a Q / lam`` (one improvement step)."""
        return self.problem._greedy(self.P(t))

    def score(self, t, x, a):
        """The linear score ``Psi(t, z) = K(t) z`` as a torch callable (for ``simulate``).

        ``t`` is a 0-d tensor (one time for the whole batch), ``x (N, n)``, ``a (N, d)``.
        """
        import torch

        K = torch.as_tensor(self.gain(float(t)), dtype=x.dtype)
        return torch.cat([x, a], -1) @ K.T

    def Q_on_grid(self, paths):
        """``Q(t_k, z_k)`` on every point of simulated ``paths``, a tensor ``(N, K+1)``."""
        import torch

        z = paths.z.numpy()
        values = [self.Q(float(tk), z[:, k]) for k, tk in enumerate(paths.t)]
        return torch.tensor(np.stack(values, 1))

    def Q(self, t: float | None, z: np.ndarray) -> np.ndarray:
        """``Q(t, z)`` for a batch ``z`` of shape ``(..., n+d)``."""
        z = np.asarray(z, dtype=float)
        return -0.5 * np.einsum("...i,ij,...j->...", z, self.P(t), z) - self.c(t)

    def expected_value(self, mean: np.ndarray, cov: np.ndarray, t: float | None = None) -> float:
        """``E Q(t, z)`` for ``z ~ N(mean, cov)``: the objective of a policy from that start law."""
        P = self.P(t)
        mean = np.asarray(mean, dtype=float)
        return float(-0.5 * (mean @ P @ mean + np.trace(P @ cov)) - self.c(t))


class LQProblem:
    """An LQ problem with a diffusing action (see the module docstring for the equations).

    Parameters are numpy arrays in the book's notation: ``A (n,n)``, ``B (n,d)``, ``sigma_x`` and
    ``sigma_a`` (scalars, diagonals or square matrices), ``M (n,n)``, ``N (d,d)``, ``R (n,d)``,
    ``G ((n+d),(n+d))`` (the terminal weight; ignored when stationary), ``lam > 0``. Give either
    ``horizon=T`` (finite horizon, optionally with ``discount``) or ``horizon=None`` with
    ``discount=beta > 0`` (stationary, infinite horizon).
    """

    def __init__(
        self,
        A,
        B,
        sigma_x,
        sigma_a,
        M,
        N,
        R,
        G=None,
        lam: float = 1.0,
        horizon: float | None = 1.0,
        discount: float = 0.0,
    ):
        A = np.asarray(A, dtype=float)
        if A.ndim == 0:
            A = A.reshape(1, 1)
        if A.ndim != 2 or A.shape[0] != A.shape[1]:
            raise LQError(f"A must be a square n x n matrix; got shape {A.shape}.")
        n = A.shape[0]
        B = np.asarray(B, dtype=float)
        if B.ndim == 0:
            B = B.reshape(1, 1)
        if B.ndim != 2 or B.shape[0] != n:
            raise LQError(f"B must have shape (n, d) = ({n}, d) to match A; got {B.shape}.")
        d = B.shape[1]
        self.n, self.d = n, d
        self.A, self.B = _matrix(A, (n, n), "A"), _matrix(B, (n, d), "B")
        self.sigma_x = _noise(sigma_x, n, "sigma_x")
        self.sigma_a = _noise(sigma_a, d, "sigma_a")
        M, N, R = _matrix(M, (n, n), "M"), _matrix(N, (d, d), "N"), _matrix(R, (n, d), "R")
        self.M, self.N, self.R = M, N, R
        self.W = _psd(np.block([[M, R], [R.T, N]]), "W = [[M, R], [R^T, N]]")
        if not np.isfinite(lam) or lam <= 0:
            raise LQError(f"lam must be a positive number (the price of action speed); got {lam}.")
        self.lam = float(lam)
        if not np.isfinite(discount) or discount < 0:
            raise LQError(f"discount must be a rate beta >= 0 per unit time; got {discount}.")
        self.discount = float(discount)
        if horizon is None:
            if self.discount <= 0:
                raise LQError(
                    "A stationary problem (horizon=None) needs discount=beta > 0; "
                    "give a positive discount rate or a finite horizon."
                )
            self.G = None
        else:
            if not np.isfinite(horizon) or horizon <= 0:
                raise LQError(f"horizon must be positive (or None for stationary); got {horizon}.")
            G = np.zeros((n + d, n + d)) if G is None else G
            self.G = _psd(_matrix(G, (n + d, n + d), "G"), "G")
        self.horizon = None if horizon is None else float(horizon)
        self.calA = np.block([[self.A, self.B], [np.zeros((d, n)), np.zeros((d, d))]])
        self.calE = np.vstack([np.zeros((n, d)), np.eye(d)])
        self.Sigma = scipy.linalg.block_diag(self.sigma_x, self.sigma_a)
        self._calA_shifted = self.calA - 0.5 * self.discount * np.eye(n + d)
        self._optimal: LQSolution | None = None

    # ----------------------------------------------------------------- helpers
    @property
    def stationary(self) -> bool:
        return self.horizon is None

    @property
    def dim(self) -> int:
        """``n + d``, the dimension of the augmented state."""
        return self.n + self.d

    @property
    def noise_cov(self) -> np.ndarray:
        """``Sigma Sigma^T``."""
        return self.Sigma @ self.Sigma.T

    def _time(self, t: float | None) -> float:
        if self.stationary:
            return 0.0
        if t is None:
            raise LQError("A finite-horizon solution needs a time t in [0, horizon].")
        t = float(t)
        if not -1e-12 <= t <= self.horizon + 1e-12:
            raise LQError(f"t = {t} is outside [0, horizon = {self.horizon}].")
        return min(max(t, 0.0), self.horizon)

    def _shifted(self) -> np.ndarray:
        """``calA - (beta/2) I``: the drift that discounting turns calA into."""
        return self._calA_shifted

    def _greedy(self, P: np.ndarray) -> np.ndarray:
        """``-(1/lam) calE^T P``: the gain of ``grad_a Q / lam`` for ``Q = -1/2 z^T P z - c``."""
        return -(self.calE.T @ P) / self.lam

    def _riccati(self, P: np.ndarray) -> np.ndarray:
        """``A'^T P + P A' - (1/lam) P calE calE^T P + W`` with ``A' = calA - (beta/2) I``."""
        Ash, E = self._shifted(), self.calE
        return Ash.T @ P + P @ Ash - (P @ E) @ (E.T @ P) / self.lam + self.W

    def _stationary_c(self, P: np.ndarray) -> float:
        """``c = tr(Sigma Sigma^T P) / (2 beta)``, the constant of a stationary value."""
        return float(np.trace(self.noise_cov @ P) / (2 * self.discount))

    def _check_gain(self, K: np.ndarray) -> np.ndarray:
        K = np.asarray(K, dtype=float)
        if K.shape != (self.d, self.dim):
            raise LQError(
                f"A linear score Psi = K z needs K of shape (d, n+d) = ({self.d}, {self.dim}); "
                f"got {K.shape}."
            )
        return K

    def gain_function(self, K: Gain) -> Callable[[float], np.ndarray]:
        """A gain given as an array or a callable of ``t``, as a checked callable of ``t``."""
        if callable(K):
            if self.stationary:
                raise LQError("A stationary problem evaluates only constant gains K (an array).")
            self._check_gain(K(0.0))
            return lambda t: self._check_gain(K(t))
        K = self._check_gain(K)
        return lambda t: K

    # ----------------------------------------------------------------- solutions
    def _solve_backward(self, rhs: Callable[[float, np.ndarray], np.ndarray]):
        """Integrate ``-dP/dt = rhs(t, P)``, ``-dc/dt = 1/2 tr(Sigma Sigma^T P) - beta c``."""
        m, S, beta = self.dim, self.noise_cov, self.discount

        def f(t, y):
            P = y[:-1].reshape(m, m)
            dP = -rhs(t, (P + P.T) / 2)
            dc = -(0.5 * np.trace(S @ P) - beta * y[-1])
            return np.concatenate([dP.ravel(), [dc]])

        y_T = np.concatenate([self.G.ravel(), [0.0]])
        sol = scipy.integrate.solve_ivp(
            f, (self.horizon, 0.0), y_T, method="DOP853", rtol=1e-11, atol=1e-12, dense_output=True
        )
        if not sol.success or not np.all(np.isfinite(sol.y)):
            raise LQError(f"The backward ODE solve failed: {sol.message}")

        def P(t):
            Pt = sol.sol(t)[:-1].reshape(m, m)
            return (Pt + Pt.T) / 2

        return P, (lambda t: float(sol.sol(t)[-1]))

    def optimal(self) -> LQSolution:
        """The optimum: the Riccati solution ``Q*``, ``c``, and the gain ``K = -(1/lam) calE^T P``.

        Solved once per problem and cached (a problem is not modified after construction).
        """
        if self._optimal is None:
            self._optimal = self._solve_optimal()
        return self._optimal

    def _solve_optimal(self) -> LQSolution:
        if self.stationary:
            P = self._stationary_riccati()
            c, K = self._stationary_c(P), self._greedy(P)
            return LQSolution(self, lambda t: P, lambda t: c, lambda t: K)
        P, c = self._solve_backward(lambda t, P: self._riccati(P))
        return LQSolution(self, P, c, lambda t: self._greedy(P(t)))

    def evaluate(self, K: Gain) -> LQSolution:
        """The Q-function of the linear score ``Psi = K z`` (Lyapunov equation).

        ``K`` is a ``d x (n+d)`` array or, for a finite horizon, a callable ``t -> K(t)``.
        """
        gain = self.gain_function(K)
        E, lam, W, Ash = self.calE, self.lam, self.W, self._shifted()
        if self.stationary:
            K0 = gain(0.0)
            closed = Ash + E @ K0
            if np.linalg.eigvals(closed).real.max() >= 0:
                raise LQError(
                    "The score Psi = K z does not stabilise the discounted problem "
                    "(calA + calE K - beta/2 I has an eigenvalue with non-negative real part), "
                    "so its Q-function is -infinity. Choose a stabilising gain."
                )
            P = scipy.linalg.solve_continuous_lyapunov(closed.T, -(W + lam * K0.T @ K0))
            P = (P + P.T) / 2
            c = self._stationary_c(P)
            return LQSolution(self, lambda t: P, lambda t: c, lambda t: K0)

        def rhs(t, P):
            Kt = gain(t)
            closed = Ash + E @ Kt
            return closed.T @ P + P @ closed + W + lam * Kt.T @ Kt

        P, c = self._solve_backward(rhs)
        return LQSolution(self, P, c, gain)

    def _stationary_riccati(self) -> np.ndarray:
        """The stabilising solution of the algebraic Riccati equation (Hamiltonian Schur method)."""
        m, Ash, E = self.dim, self._shifted(), self.calE
        H = np.block([[Ash, -(E @ E.T) / self.lam], [-self.W, -Ash.T]])
        T, U, k = scipy.linalg.schur(H, output="real", sort="lhp")
        X, Y = U[:m, :m], U[m:, :m]
        if k != m or np.linalg.cond(X) > 1e12:
            raise LQError(
                "This discounted LQ problem has no stabilising solution: (A, B) is not "
                "stabilisable or (W) does not detect an unstable mode at this discount rate. "
                "Raise the discount rate, add state cost, or check A and B."
            )
        P = np.linalg.solve(X.T, Y.T).T
        P = (P + P.T) / 2
        if np.abs(self._riccati(P)).max() > 1e-8 * max(1.0, np.abs(P).max()):
            raise LQError("The algebraic Riccati solve did not converge (residual too large).")
        return P

    def policy_iteration(self, K0: Gain, n_iter: int = 8) -> list[LQSolution]:
        """Exact continuous-time policy iteration (Kleinman): evaluate, then ``K <- greedy gain``.

        Returns the evaluations of ``K0, K1, ..., K_{n_iter}``; their values increase monotonically
        to the Riccati solution.
        """
        if n_iter < 0:
            raise LQError(f"n_iter must be >= 0; got {n_iter}.")
        sols = [self.evaluate(K0)]
        for _ in range(n_iter):
            prev = sols[-1]
            if self.stationary:
                sols.append(self.evaluate(prev.greedy_gain()))
            else:
                sols.append(self.evaluate(prev.greedy_gain))
        return sols

    def sde(self) -> AugmentedSDE:
        """This problem as a :class:`cqsm.lq.sde.AugmentedSDE` (torch, float64), to simulate."""
        A, B, W = (torch.as_tensor(m, dtype=DTYPE) for m in (self.A, self.B, self.W))
        G = None if self.G is None else torch.as_tensor(self.G, dtype=DTYPE)

        def quad(z, S):
            return 0.5 * torch.einsum("...i,ij,...j->...", z, S, z)

        return AugmentedSDE(
            n=self.n,
            d=self.d,
            drift_x=lambda t, x, a: x @ A.T + a @ B.T,
            sigma_x=torch.as_tensor(self.sigma_x, dtype=DTYPE),
            sigma_a=torch.as_tensor(self.sigma_a, dtype=DTYPE),
            reward=lambda t, x, a: -quad(torch.cat([x, a], -1), W),
            terminal=None if G is None else (lambda x, a: -quad(torch.cat([x, a], -1), G)),
            lam=self.lam,
            horizon=self.horizon,
            discount=self.discount,
        )

    def discrete_time_P(self, dt: float) -> np.ndarray:
        """``P`` of the optimal Q of the Euler-discretised stationary problem with step ``dt``.

        ``z' = (I + calA dt) z + calE Psi dt + Sigma sqrt(dt) eps``, reward
        ``(-1/2 z^T W z - lam/2 |Psi|^2) dt``, discount ``e^{-beta dt}`` per step. As ``dt -> 0``
        it tends to the continuous-time ``P``: the action block does not vanish.
        """
        if not self.stationary:
            raise LQError("discrete_time_P is defined for the stationary (discounted) problem.")
        if not np.isfinite(dt) or dt <= 0:
            raise LQError(f"dt must be positive; got {dt}.")
        root_gamma = np.exp(-0.5 * self.discount * dt)
        F = root_gamma * (np.eye(self.dim) + self.calA * dt)
        Ed = root_gamma * self.calE * dt
        return scipy.linalg.solve_discrete_are(F, Ed, self.W * dt, self.lam * dt * np.eye(self.d))

    def discrete_time_gain(self, dt: float, P: np.ndarray | None = None) -> np.ndarray:
        """The greedy gain of the Euler-discretised problem: ``Psi = K_dt z`` maximises its Q.

        With ``gamma = e^{-beta dt}``, ``F = I + calA dt`` and the discrete value
        ``V(z) = -1/2 z^T P z - c`` (``P = discrete_time_P(dt)`` unless given), the one-step
        Q-function ``(-1/2 z^T W z - lam/2 |Psi|^2) dt + gamma E V(F z + calE Psi dt + noise)``
        is concave in ``Psi`` and maximal at

            K_dt = -(lam I + gamma dt calE^T P calE)^{-1} gamma calE^T P F,

        which tends to the continuous-time ``-(1/lam) calE^T P`` as ``dt -> 0`` (error ``O(dt)``).
        """
        if P is None:
            P = self.discrete_time_P(dt)
        gamma, E = np.exp(-self.discount * dt), self.calE
        F = np.eye(self.dim) + self.calA * dt
        lhs = self.lam * np.eye(self.d) + gamma * dt * (E.T @ P @ E)
        return -np.linalg.solve(lhs, gamma * (E.T @ P @ F))

    def discrete_time_evaluate(self, K, dt: float) -> np.ndarray:
        """``P`` of the Q of ``Psi = K z`` on the Euler-discretised stationary problem (step dt).

        The discrete Lyapunov equation ``P = (W + lam K^T K) dt + gamma F_K^T P F_K`` with
        ``F_K = I + (calA + calE K) dt`` and ``gamma = e^{-beta dt}``: what a TD(0)/LSTD critic
        of the quadratic family fitted on Euler data at step ``dt`` converges to. Raises
        :class:`LQError` when ``sqrt(gamma) F_K`` is not stable (the discrete value is infinite).
        """
        if not self.stationary:
            raise LQError("discrete_time_evaluate is defined for the stationary problem.")
        if not np.isfinite(dt) or dt <= 0:
            raise LQError(f"dt must be positive; got {dt}.")
        K = self._check_gain(K)
        F = np.sqrt(np.exp(-self.discount * dt)) * (
            np.eye(self.dim) + (self.calA + self.calE @ K) * dt
        )
        if np.abs(np.linalg.eigvals(F)).max() >= 1:
            raise LQError(
                f"Psi = K z does not stabilise the discounted Euler chain at dt = {dt}; "
                "its discrete value is -infinity."
            )
        P = scipy.linalg.solve_discrete_lyapunov(F.T, (self.W + self.lam * K.T @ K) * dt)
        return (P + P.T) / 2


@dataclass(frozen=True)
class FeedbackValue:
    """The exact value ``V(x) = -1/2 x^T S x - s`` of a linear feedback ``u = K x``.

    On a :class:`ConventionalLQ` problem with discount rate ``beta`` (continuous time).
    """

    S: np.ndarray
    """The ``n x n`` matrix of the value."""
    s: float
    """The noise constant ``tr(sigma_x sigma_x^T S) / (2 beta)``."""
    K: np.ndarray
    """The ``d x n`` feedback gain."""

    def V(self, x: np.ndarray) -> np.ndarray:
        """``V(x)`` for a batch ``x`` of shape ``(..., n)``."""
        x = np.asarray(x, dtype=float)
        return -0.5 * np.einsum("...i,ij,...j->...", x, self.S, x) - self.s

    def expected_value(self, mean: np.ndarray, cov: np.ndarray) -> float:
        """``E V(x)`` for ``x ~ N(mean, cov)``."""
        mean = np.asarray(mean, dtype=float)
        return float(-0.5 * (mean @ self.S @ mean + np.trace(self.S @ cov)) - self.s)


class ConventionalLQ:
    """The conventional LQ problem in which the control ``u`` enters the dynamics directly.

    ``dX = (A X + B u) dt + sigma_x dB``, reward ``-1/2 (x^T M x + u^T N u)``, discount ``beta``.
    There is no cross term ``x^T R u`` (an :class:`LQProblem`'s ``R`` has no counterpart here),
    no action diffusion and no price ``lam`` of action speed. Its discrete-time Q-function with
    control interval ``dt`` holds ``u`` for one step and then acts optimally; as ``dt -> 0`` it
    collapses onto the value function (the action gap is O(dt)).
    """

    def __init__(self, A, B, sigma_x, M, N, discount: float):
        A = np.atleast_2d(np.asarray(A, dtype=float))
        n = A.shape[0]
        B = np.asarray(B, dtype=float).reshape(n, -1)
        d = B.shape[1]
        self.A, self.B = _matrix(A, (n, n), "A"), B
        self.sigma_x = _noise(sigma_x, n, "sigma_x")
        self.M = _psd(_matrix(M, (n, n), "M"), "M")
        self.N = _psd(_matrix(N, (d, d), "N"), "N")
        if np.linalg.eigvalsh(self.N).min() <= 0:
            raise LQError("The conventional problem needs a positive definite control cost N.")
        if discount <= 0:
            raise LQError(f"discount must be positive; got {discount}.")
        self.discount = float(discount)
        Ash = self.A - 0.5 * self.discount * np.eye(n)
        self._S = scipy.linalg.solve_continuous_are(Ash, self.B, self.M, self.N)

    def value_matrix(self) -> np.ndarray:
        """``S`` with ``V(x) = -1/2 x^T S x - s`` (algebraic Riccati equation, solved once)."""
        return self._S

    def action_hessian(self, dt: float) -> np.ndarray:
        """``-d^2 Q_dt / du^2``: hold ``u`` for ``dt``, then follow the optimal policy.

        ``Q_dt(x, u) = -1/2 (x^T M x + u^T N u) dt + e^{-beta dt} E V(x + (A x + B u) dt + noise)``.
        """
        if dt <= 0:
            raise LQError(f"dt must be positive; got {dt}.")
        S = self._S
        return self.N * dt + np.exp(-self.discount * dt) * (self.B.T @ S @ self.B) * dt**2

    @classmethod
    def from_problem(cls, prob: LQProblem) -> ConventionalLQ:
        """The conventional counterpart of an augmented problem: the same ``A, B, sigma_x, M, N``
        and ``beta``; its ``R``, ``sigma_a`` and ``lam`` have none."""
        if not prob.stationary:
            raise LQError("The conventional counterpart is defined for stationary problems.")
        return cls(prob.A, prob.B, prob.sigma_x, prob.M, prob.N, discount=prob.discount)

    @property
    def n(self) -> int:
        return self.A.shape[0]

    @property
    def d(self) -> int:
        return self.B.shape[1]

    def optimal_gain(self) -> np.ndarray:
        """``K* = -N^{-1} B^T S``: the optimal feedback ``u = K* x``."""
        return -np.linalg.solve(self.N, self.B.T @ self._S)

    def optimal(self) -> FeedbackValue:
        """The optimum ``V*(x) = -1/2 x^T S x - s`` with its gain."""
        return FeedbackValue(self._S, self._noise_constant(self._S), self.optimal_gain())

    def _noise_constant(self, S: np.ndarray) -> float:
        return float(np.trace(self.sigma_x @ self.sigma_x.T @ S) / (2 * self.discount))

    def evaluate(self, K) -> FeedbackValue:
        """The exact continuous-time value of the feedback ``u = K x`` (``K`` of shape ``d x n``).

        ``(A + B K - beta/2 I)^T S + S (A + B K - beta/2 I) + M + K^T N K = 0`` and
        ``s = tr(sigma_x sigma_x^T S) / (2 beta)``. Raises :class:`LQError` when
        ``A + B K - beta/2 I`` is not stable (the discounted value is -infinity).
        """
        K = _matrix(K, (self.d, self.n), "K")
        closed = self.A + self.B @ K - 0.5 * self.discount * np.eye(self.n)
        if np.linalg.eigvals(closed).real.max() >= 0:
            raise LQError(
                "The feedback u = K x does not stabilise the discounted problem "
                "(A + B K - beta/2 I has an eigenvalue with non-negative real part), "
                "so its value is -infinity."
            )
        S = scipy.linalg.solve_continuous_lyapunov(closed.T, -(self.M + K.T @ self.N @ K))
        S = (S + S.T) / 2
        return FeedbackValue(S, self._noise_constant(S), K)

    def discrete_time_S(self, dt: float, gamma: float) -> np.ndarray:
        """``S_dt`` of the optimal value of the Euler-sampled problem with discount ``gamma``.

        ``x' = x + (A x + B u) dt + sigma_x sqrt(dt) eps``, reward
        ``-1/2 (x^T M x + u^T N u) dt``, discount ``gamma`` per step (``e^{-beta dt}`` for the
        problem's own rate, or any other, e.g. a fixed ``0.99``): the fixed point of
        Q-learning with a quadratic Q-function, a discrete algebraic Riccati equation.
        """
        dt, gamma = self._check_step(dt, gamma)
        root = np.sqrt(gamma)
        F, G = root * (np.eye(self.n) + self.A * dt), root * self.B * dt
        return scipy.linalg.solve_discrete_are(F, G, self.M * dt, self.N * dt)

    def discrete_time_gain(self, dt: float, gamma: float) -> np.ndarray:
        """The greedy feedback ``u = K_dt x`` of the Euler-sampled problem (``discrete_time_S``).

        ``K_dt = -(N + gamma dt B^T S_dt B)^{-1} gamma B^T S_dt (I + A dt)``.
        """
        dt, gamma = self._check_step(dt, gamma)
        S = self.discrete_time_S(dt, gamma)
        F = np.eye(self.n) + self.A * dt
        lhs = self.N + gamma * dt * (self.B.T @ S @ self.B)
        return -np.linalg.solve(lhs, gamma * (self.B.T @ S @ F))

    @staticmethod
    def _check_step(dt: float, gamma: float) -> tuple[float, float]:
        if not np.isfinite(dt) or dt <= 0:
            raise LQError(f"dt must be positive; got {dt}.")
        if not 0 < gamma < 1:
            raise LQError(f"gamma must be a discount per step in (0, 1); got {gamma}.")
        return float(dt), float(gamma)


def example(name: str) -> LQProblem:
    """The book's named example problems.

    ``"scalar"``: ``n = d = 1``, the problem of DESIGN's sanity value (``Q*(0, (1, -0.5))``
    is about -0.27897). ``"planar"``: a damped oscillator (``n = 2``) driven by two actions
    (``d = 2``), horizon 1. ``"scalar-discounted"``: the scalar dynamics, stationary with
    ``beta = 0.5``.
    """
    if name == "scalar":
        return LQProblem(-0.5, 1.0, 0.3, 0.5, 1.0, 0.2, 0.1, np.diag([1.0, 0.0]), 0.5, horizon=1.0)
    if name == "planar":
        A = np.array([[0.0, 1.0], [-1.0, -0.3]])
        B = np.array([[1.0, 0.0], [0.5, 1.0]])
        R = np.array([[0.1, 0.0], [0.0, 0.05]])
        G = np.diag([1.0, 0.5, 0.0, 0.0])
        return LQProblem(A, B, 0.2, 0.5, np.eye(2), 0.2 * np.eye(2), R, G, 0.5, horizon=1.0)
    if name == "scalar-discounted":
        return LQProblem(-0.5, 1.0, 0.3, 0.5, 1.0, 0.2, 0.1, None, 0.5, horizon=None, discount=0.5)
    raise ValueError(f"Unknown example {name!r}; choose 'scalar', 'planar' or 'scalar-discounted'.")
