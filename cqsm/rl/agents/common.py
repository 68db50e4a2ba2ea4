"""Parts every deep agent shares: networks, twin critics, target updates, the agent interface.

An agent is built from its settings and the (wrapped) training env, acts on one observation,
updates from a replay batch, and saves its whole state. :func:`cqsm.rl.train.train` drives it.
"""

from __future__ import annotations

import copy
import math
from typing import Protocol

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from cqsm.rl.envs import EnvError

__all__ = [
    "Agent",
    "deep_mlp",
    "Mish",
    "TwinCritic",
    "soft_update",
    "target_rate",
    "as_batch",
    "ActionBox",
    "Saved",
    "with_target",
    "descend",
    "fit_critic",
    "bootstrapped",
    "obs_dim",
    "unwrapped",
]


class Agent(Protocol):
    """What :func:`cqsm.rl.train.train` needs from an algorithm."""

    @staticmethod
    def wrap(env: gym.Env, settings, explore: bool) -> gym.Env:
        """The env the agent acts in (for CQSM, the action-diffusion wrapper), from the env
        :func:`cqsm.rl.envs.make` made at the run's control interval."""

    def act(self, obs: np.ndarray, explore: bool) -> np.ndarray:
        """The action for one observation; ``explore=False`` for evaluation."""

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step from a replay batch; returns losses and diagnostics."""

    def state_dict(self) -> dict:
        """Everything needed to continue training exactly (networks, optimisers, counters)."""

    def load_state_dict(self, state: dict) -> None: ...

    def policy_state_dict(self) -> dict:
        """What acting needs, and nothing more."""

    def load_policy_state_dict(self, state: dict) -> None: ...


class _MishFunction(torch.autograd.Function):
    """``x tanh(softplus(x))`` from one sigmoid, with its derivative written out.

    With ``s = sigmoid(x)``, ``1 + e^x = 1 / (1 - s)``, so ``tanh(softplus(x)) = (1 - (1 - s)^2)
    / (1 + (1 - s)^2) = n / (2 - n)`` with ``n = s (2 - s)``: no cancellation at either end
    (``n -> 1`` as ``x -> inf``, ``n ~ 2 e^x`` as ``x -> -inf``). The derivative is
    ``t + x s (1 - t^2)``, ``t = tanh(softplus(x))``, since ``softplus' = sigmoid``."""

    @staticmethod
    def parts(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``sigmoid(x)`` and ``tanh(softplus(x))``."""
        s = torch.sigmoid(x)
        n = torch.rsub(s, 2).mul_(s)
        return s, n.div_(torch.rsub(n, 2))

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        s, t = _MishFunction.parts(x)
        ctx.save_for_backward(x, s, t)
        return x * t

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        x, s, t = ctx.saved_tensors
        return (t * t).neg_().add_(1).mul_(s).mul_(x).add_(t).mul_(grad)


class Mish(nn.Module):
    """``x tanh(softplus(x))``: the function of :class:`torch.nn.Mish` (equal to float32
    rounding) and its gradient, from one vectorised ``sigmoid`` and a few products. On CPU, at a
    256 x 256 batch on one thread, that runs forward about three times and forward with backward
    about twice as fast as ``tanh`` of ``softplus``, and faster than the fused ``mish`` kernel
    (beside the matrix products, the activations are most of the diffusion baselines' cost).
    First derivatives only: a second-order gradient through it is an error."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and x.requires_grad:
            return _MishFunction.apply(x)
        return x * _MishFunction.parts(x)[1]  # the same numbers, without autograd's overhead


def deep_mlp(
    n_in: int, hidden: tuple[int, ...], n_out: int, activation: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """A multilayer perceptron (float32, ReLU unless told), the network of every deep agent."""
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), activation()]
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


class TwinCritic(nn.Module):
    """Two independent critics ``Q_1, Q_2`` of ``(x, a)`` (clipped double-Q takes their minimum)."""

    def __init__(self, x_dim: int, a_dim: int, hidden: tuple[int, ...]):
        super().__init__()
        self.q1 = deep_mlp(x_dim + a_dim, hidden, 1)
        self.q2 = deep_mlp(x_dim + a_dim, hidden, 1)

    def forward(self, x: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa = torch.cat([x, a], -1)
        return self.q1(xa).squeeze(-1), self.q2(xa).squeeze(-1)

    def first(self, x: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``Q_1(x, a)`` alone (the critic an actor follows, as in TD3)."""
        return self.q1(torch.cat([x, a], -1)).squeeze(-1)


@torch.no_grad()
def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """Polyak averaging ``target <- (1 - tau) target + tau source``."""
    for t, s in zip(target.parameters(), source.parameters(), strict=True):
        t.lerp_(s, tau)


def target_rate(tau: float, tau_interval: float | None, dt: float) -> float:
    """The target critics' Polyak rate per update at a control interval of ``dt`` seconds:
    ``tau``, or (``tau_interval`` given) ``tau`` per ``tau_interval`` seconds, ``tau *
    tau_interval / dt`` (at most 1; exactly ``tau`` at ``dt = tau_interval``), so that their
    value advances as many seconds of horizon per update at any interval."""
    if tau_interval is None or math.isclose(tau_interval, dt):
        return tau
    return min(1.0, tau * tau_interval / dt)


class HeldNoise:
    """Standard normal exploration noise of ``d`` coordinates: a fresh draw every control step
    (``hold`` None), or each draw held for ``hold`` seconds of training steps at a control
    interval of ``dt`` seconds (at least one step; across episodes), the time-aware rule's
    exploration in physical time. Its draw and the steps it is still held for are part of the
    agent's state (``state_dict``), so a resumed run draws on as the uninterrupted one."""

    def __init__(self, hold: float | None, dt: float, d: int):
        self.steps = None if hold is None else max(1, round(hold / dt))
        self.noise, self.left = torch.zeros(d), 0

    def draw(self, like: torch.Tensor) -> torch.Tensor:
        """This control step's noise, shaped like ``like``: fresh, or the held draw."""
        if self.steps is None:
            return torch.randn_like(like)
        if self.left == 0:
            self.noise, self.left = torch.randn_like(like), self.steps
        self.left -= 1
        return self.noise

    def state_dict(self) -> dict:
        return {"noise": self.noise, "noise_left": self.left}

    def load_state_dict(self, state: dict) -> None:
        self.noise = state.get("noise", self.noise)  # absent from older checkpoints
        self.left = int(state.get("noise_left", 0))


def as_batch(obs: np.ndarray) -> torch.Tensor:
    """One observation as a float32 batch of one."""
    return torch.as_tensor(np.asarray(obs, dtype=np.float32)).unsqueeze(0)


class ActionBox:
    """An env's action box as ``center + half * u`` with ``u`` in ``[-1, 1]``: the baselines'
    networks work in ``u`` and act in the env's own units, whatever its bounds."""

    def __init__(self, space: gym.spaces.Space, algo: str):
        if not isinstance(space, gym.spaces.Box) or not (
            np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))
        ):
            raise EnvError(
                f"{algo} needs a bounded Box action space; got {space}. Wrap the env so that "
                "its actions lie in a finite box."
            )
        low, high = space.low.astype(np.float32), space.high.astype(np.float32)
        self.d = int(low.size)
        self.center = torch.as_tensor((high + low) / 2)
        self.half = torch.as_tensor((high - low) / 2)
        self.low, self.high = torch.as_tensor(low), torch.as_tensor(high)

    def to_env(self, u: torch.Tensor) -> torch.Tensor:
        return self.center + self.half * u

    def to_unit(self, a: torch.Tensor) -> torch.Tensor:
        return (a - self.center) / self.half

    def clip(self, a: torch.Tensor) -> torch.Tensor:
        return torch.clamp(a, self.low, self.high)


class Saved:
    """The agent's state from its named parts: ``PARTS`` (modules and optimisers: everything
    training needs, with the update counter) and ``POLICY_PARTS`` (what acting needs)."""

    PARTS: tuple[str, ...] = ()
    POLICY_PARTS: tuple[str, ...] = ()
    updates: int = 0
    span_steps: int = 1  # the replayed steps each update's targets follow (ReplayBuffer.sample)

    def state_dict(self) -> dict:
        return {k: getattr(self, k).state_dict() for k in self.PARTS} | {"updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        for k in self.PARTS:
            getattr(self, k).load_state_dict(state[k])
        self.updates = int(state["updates"])

    def policy_state_dict(self) -> dict:
        """What acting needs (``policy.pt``, small enough to commit)."""
        return {k: getattr(self, k).state_dict() for k in self.POLICY_PARTS}

    def load_policy_state_dict(self, state: dict) -> None:
        for k in self.POLICY_PARTS:
            getattr(self, k).load_state_dict(state[k])


def obs_dim(env: gym.Env) -> int:
    """The length of the env's (flattened) observation."""
    return int(np.prod(env.observation_space.shape))


def with_target(net: nn.Module, lr: float) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """``net``, a frozen copy of it to serve as its target network, and its Adam optimiser."""
    target = copy.deepcopy(net).requires_grad_(False)
    return net, target, torch.optim.Adam(net.parameters(), lr=lr, fused=True)


def descend(optimizer: torch.optim.Optimizer, loss: torch.Tensor, clip_norm=None, also=()) -> None:
    """One optimiser step on ``loss``: clear the gradients, backpropagate into the optimiser's
    parameters only (an actor's loss passes through the critics, whose own weight gradients
    would be wasted work) and into the tensors ``also``, clip the parameters' gradient norm to
    ``clip_norm`` if given, step."""
    optimizer.zero_grad(set_to_none=True)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    loss.backward(inputs=params + list(also))
    if clip_norm is not None:
        nn.utils.clip_grad_norm_(params, clip_norm)
    optimizer.step()


def fit_critic(
    critic: TwinCritic,
    optimizer,
    x: torch.Tensor,
    a: torch.Tensor,
    target: torch.Tensor,
    clip_norm=None,
) -> dict[str, float]:
    """One regression step of both critics on a TD target; returns the loss and the mean ``Q_1``."""
    q1, q2 = critic(x, a)
    loss = F.mse_loss(q1, target) + F.mse_loss(q2, target)
    descend(optimizer, loss, clip_norm)
    return {"critic_loss": loss.item(), "q": q1.mean().item()}


def bootstrapped(batch: dict[str, torch.Tensor], value: torch.Tensor, gamma: float) -> torch.Tensor:
    """The one-step target ``r + gamma (1 - terminated) value(x')`` of the discrete-time baselines
    (a truncated transition keeps its future)."""
    return batch["reward"] + (1 - batch["terminated"]) * gamma * value


def unwrapped(env: gym.Env, settings, explore: bool) -> gym.Env:
    """The ``wrap`` of agents that act in the env as it is (every baseline), at the control
    interval :func:`cqsm.rl.envs.make` gave it."""
    return env
