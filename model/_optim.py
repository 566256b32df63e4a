"""Optimizers and learning-rate schedules built from their specs."""

from __future__ import annotations

import inspect
import logging
import math
from collections import defaultdict
from collections.abc import Callable
from fnmatch import fnmatchcase
from functools import partial
from typing import Any

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from model._config import AutoParamGroupsSpec, OptimizerSpec, SchedulerSpec, optimizer_class
from model._errors import ConfigError

log = logging.getLogger(__name__)


class Lookahead(Optimizer):
    """Lookahead (Zhang et al., 2019) around any base optimizer.

    The base optimizer takes ``k`` fast steps; then the slow weights move ``alpha`` of the way
    towards the fast ones and the fast weights are reset to them. ``param_groups`` are the base
    optimizer's own, so learning-rate schedulers and gradient scalers see one set of groups.
    """

    def __init__(self, base: Optimizer, alpha: float = 0.5, k: int = 5) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"The value of `alpha` is {alpha}, but must be in (0, 1].")
        if k < 1:
            raise ValueError(f"The value of `k` is {k}, but must be >= 1.")
        self.base = base
        self.alpha = alpha
        self.k = k
        self.param_groups = base.param_groups
        self.defaults = base.defaults
        self.state: defaultdict[torch.Tensor, Any] = defaultdict(dict)
        self._fast_steps = 0
        self._optimizer_step_pre_hooks = {}  # type: ignore[assignment]
        self._optimizer_step_post_hooks = {}  # type: ignore[assignment]
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["slow"] = p.detach().clone()

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = self.base.step(closure)
        self._fast_steps += 1
        if self._fast_steps % self.k == 0:
            for group in self.param_groups:
                for p in group["params"]:
                    slow = self.state[p]["slow"]
                    slow.add_(p - slow, alpha=self.alpha)
                    p.copy_(slow)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        slow = [self.state[p]["slow"] for group in self.param_groups for p in group["params"]]
        return {"base": self.base.state_dict(), "slow": slow, "fast_steps": self._fast_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.base.load_state_dict(state_dict["base"])
        params = [p for group in self.param_groups for p in group["params"]]
        for p, slow in zip(params, state_dict["slow"], strict=True):
            self.state[p]["slow"] = slow.to(p.device).clone()
        self._fast_steps = int(state_dict["fast_steps"])


def base_optimizer(optimizer: Optimizer) -> Optimizer:
    return optimizer.base if isinstance(optimizer, Lookahead) else optimizer


def param_groups(
    model: torch.nn.Module, weight_decay: float, spec: AutoParamGroupsSpec
) -> list[dict[str, Any]]:
    """One group, or when ``spec.enabled`` two: 1-D tensors (biases, norm scales) and the
    parameters named by ``spec.no_decay_patterns`` get ``spec.override_no_decay_weight``."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not spec.enabled:
        return [{"params": [p for _, p in params]}]

    def exempt(name: str, param: torch.Tensor) -> bool:
        return param.ndim <= 1 or any(fnmatchcase(name, pat) for pat in spec.no_decay_patterns)

    for pattern in spec.no_decay_patterns:
        if not any(fnmatchcase(n, pattern) for n, _ in params):
            log.warning("auto_param_groups.no_decay_patterns: %r names no parameter", pattern)
    decay = [p for n, p in params if not exempt(n, p)]
    no_decay = [p for n, p in params if exempt(n, p)]
    groups = [{"params": decay, "weight_decay": weight_decay}] if decay else []
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": spec.override_no_decay_weight})
    return groups


def build_optimizer(spec: OptimizerSpec, model: torch.nn.Module, device: torch.device) -> Optimizer:
    cls = optimizer_class(spec.type)
    kwargs = dict(spec.hyperparameters)
    for key, value in kwargs.items():
        if isinstance(value, list):
            kwargs[key] = tuple(value)
    if spec.fused and device.type == "cuda" and _accepts(cls, "fused"):
        kwargs["fused"] = True
    weight_decay = float(kwargs.get("weight_decay", 0.0) or 0.0)
    try:
        optimizer = cls(param_groups(model, weight_decay, spec.auto_param_groups), **kwargs)
    except (ValueError, TypeError) as exc:  # torch's own checks, e.g. nesterov without momentum
        raise ConfigError(f"optimizer {spec.name} (torch.optim.{spec.type}): {exc}") from None
    if spec.lookahead.enabled:
        optimizer = Lookahead(optimizer, alpha=spec.lookahead.alpha, k=spec.lookahead.k)
    return optimizer


def _accepts(cls: type, name: str) -> bool:
    return name in inspect.signature(cls).parameters


def build_scheduler(
    spec: SchedulerSpec,
    optimizer_spec: OptimizerSpec,
    optimizer: Optimizer,
    total_steps: int,
    updates_per_call: int = 1,
) -> LRScheduler:
    """The schedule over ``total_steps`` calls of ``scheduler.step()``.

    ``updates_per_call``: optimizer updates between two calls (the updates of an epoch when the
    schedule is stepped per epoch); warm-up is counted in updates and converted to calls.
    """
    base = base_optimizer(optimizer)
    total = max(1, total_steps)
    warmup = spec.warmup_steps if spec.warmup_steps is not None else optimizer_spec.warmup_steps
    warmup = min(math.ceil(warmup / updates_per_call), total - 1)
    start = spec.warmup_start_factor
    base_lrs = [float(group["lr"]) for group in base.param_groups]

    if spec.type == "onecycle":
        peak = base_lrs
        initial = [lr * start for lr in peak]
        final_div = [(i / spec.min_lr) if spec.min_lr > 0 else 1e4 for i in initial]
        return OneCycleLR(
            base,
            max_lr=peak,
            # torch's schedule peaks at step pct_start * total_steps - 1 and is defined up to
            # total_steps - 1: peak after the warm-up, as the other schedules do, end at total.
            total_steps=total + 1,
            pct_start=(max(warmup, 1) + 1) / (total + 1),
            div_factor=1.0 / start,
            final_div_factor=min(final_div),
            anneal_strategy=spec.anneal_strategy,
            cycle_momentum=False,
        )

    def factor(step: int, lr: float) -> float:
        if step < warmup:
            return start + (1.0 - start) * step / warmup
        if spec.type == "constant":
            return 1.0
        floor = min(1.0, spec.min_lr / lr) if lr > 0 else 0.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    lambdas: list[Callable[[int], float]] = [partial(factor, lr=lr) for lr in base_lrs]
    return LambdaLR(base, lambdas)
