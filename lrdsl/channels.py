"""The one table of channels: what each named value a schedule drives means (docs/language.md "Targets and channels").

A channel is a named scalar computed at every tick.  Four are **optimizer targets**, written
into the optimizer by every backend: ``lr``, ``momentum``, ``beta2``, ``weight_decay``.  Where
each is written (a torch param-group key or ``betas[i]``, a Keras optimizer attribute, an optax
hyperparameter), its range, and the key it has in a config are in :data:`CHANNELS`, and every
module asks this table rather than keeping its own.  Any other name (``ema``, ``kl``,
``dropout``, v3's free values) is a channel too — :func:`channel` gives one that no backend
writes anywhere: the user's code reads its value.

Imports no framework: a torch param group is read as the dict it is.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from lrdsl.errors import LrdslError


@dataclass(frozen=True)
class Channel:
    """One named value and where each framework keeps it (empty: nowhere, a free value)."""

    name: str
    description: str
    #: values must stay below this (exclusive); None: any finite value ≥ 0 (docs/language.md)
    below: float | None = None
    #: the key of its expression in a schedule config (``schedule.<key>``, a Hydra config)
    config_key: str = ""
    #: torch: the param-group key that holds it, or None
    torch_key: str | None = None
    #: torch: its index in an Adam-style group's ``betas``, looked for first (as OneCycleLR
    #: cycles Adam's beta1 as momentum), or None
    torch_beta: int | None = None
    #: Keras 3: the optimizer attributes that may hold it, in the order they are looked for
    keras: tuple[str, ...] = ()
    #: optax: the hyperparameter names (``optax.inject_hyperparams``) that may hold it, in order
    optax: tuple[str, ...] = ()
    #: values must not exceed this (inclusive: an EMA decay may reach 1), or None
    at_most: float | None = None
    #: read rounded to the nearest integer (halves up), and then at least 1 (a batch size)
    integer: bool = False

    @property
    def optimizer_target(self) -> bool:
        """Whether backends write it into the optimizer (else it is a free value, docs/language.md)."""
        return bool(self.torch_key or self.torch_beta is not None or self.keras or self.optax)

    @property
    def range_words(self) -> str:
        if self.integer:
            return "an integer ≥ 1 (read rounded, halves up)"
        if self.below is not None:
            return f"in [0, {self.below:g})"
        return f"in [0, {self.at_most:g}]" if self.at_most is not None else "≥ 0"

    def check_peak(self, peak: float, where: str) -> None:
        """Refuse a largest value outside the channel's range: ``where`` names the expression."""
        if self.below is not None and peak >= self.below:
            raise LrdslError(f"{where} reaches {peak:.4g}; {self.name} must stay below {self.below:g}")
        if self.at_most is not None and peak > self.at_most:
            raise LrdslError(f"{where} reaches {peak:.4g}; {self.name} must stay at most {self.at_most:g}")

    def check_range(self, low: float, high: float, where: str) -> None:
        """Refuse a proven range (low, high) outside the channel's declared one."""
        self.check_peak(high, where)
        if self.integer and not low >= 0.5:
            raise LrdslError(f"{where} may fall to {low:.4g}, which reads as "
                             f"{math.floor(low + 0.5):g}; {self.name} is an integer ≥ 1")

    def read(self, value):
        """The value as its user reads it: rounded to the nearest integer, halves up, for an
        integer channel (a float, or a numpy array), else as it is."""
        if not self.integer:
            return value
        return float(math.floor(value + 0.5)) if isinstance(value, float) else (value + 0.5) // 1

    # --- torch: a param group is a dict ------------------------------------------------------
    def torch_place(self, group: dict) -> tuple[str, int | None] | None:
        """(key, index) of the channel in a torch param group — ``("betas", i)`` or
        ``(key, None)`` — or None when the group has no such value."""
        if self.torch_beta is not None and "betas" in group:
            return "betas", self.torch_beta
        if self.torch_key is not None and (self.torch_key == "lr" or self.torch_key in group):
            return self.torch_key, None
        return None

    def torch_read(self, group: dict) -> Any:
        """The group's raw value (a float, a tensor, …), or None when it has none."""
        place = self.torch_place(group)
        if place is None:
            return None
        key, index = place
        return group[key] if index is None else group[key][index]

    # --- Keras -----------------------------------------------------------------------------
    def keras_attribute(self, optimizer: Any) -> str | None:
        """The first of :attr:`keras` that ``optimizer`` has, or None.  It may hold None (Keras's
        ``weight_decay=None``): a place lrdsl can still write."""
        return next((a for a in self.keras if hasattr(optimizer, a)), None)


#: the optimizer targets, in the order they are written and shown (docs/language.md "Targets and channels")
CHANNELS: dict[str, Channel] = {c.name: c for c in (
    Channel("lr", "the learning rate", config_key="expr", torch_key="lr",
            keras=("learning_rate",), optax=("learning_rate",)),
    Channel("momentum", "momentum, or beta1 of Adam-style optimizers", below=1.0,
            config_key="momentum", torch_key="momentum", torch_beta=0,
            keras=("beta_1", "momentum"), optax=("b1", "momentum")),
    Channel("beta2", "beta2 of Adam-style optimizers", below=1.0, config_key="beta2",
            torch_beta=1, keras=("beta_2",), optax=("b2",)),
    Channel("weight_decay", "weight decay", config_key="weight_decay", torch_key="weight_decay",
            keras=("weight_decay",), optax=("weight_decay",)),
)}

#: free values whose range lrdsl knows (docs/language.md "Programs"): never written anywhere
FREE: dict[str, Channel] = {c.name: c for c in (
    Channel("ema", "the decay of an exponential moving average of the weights", at_most=1.0,
            config_key="ema"),
    Channel("dropout", "the dropout rate of the model's dropout layers", below=1.0,
            config_key="dropout"),
    Channel("batch_size", "the samples per step the data loader draws", integer=True,
            config_key="batch_size"),
    Channel("seq_len", "the tokens per sample (sequence length)", integer=True,
            config_key="seq_len"),
)}

#: the names of the optimizer targets, ``lr`` first
TARGETS: tuple[str, ...] = tuple(CHANNELS)
#: the targets besides the LR
OTHER_TARGETS: tuple[str, ...] = TARGETS[1:]
#: config keys of the targets' expressions (``expr`` for the LR), in TARGETS order
CONFIG_KEYS: tuple[str, ...] = tuple(c.config_key for c in CHANNELS.values())

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")


def channel(name: str) -> Channel:
    """The channel called ``name``: an optimizer target, or a free value (docs/language.md: an identifier,
    dots allowed, e.g. ``ema`` or ``loss.kl``) that no backend writes."""
    found = CHANNELS.get(name) or FREE.get(name)
    if found is not None:
        return found
    if not isinstance(name, str) or not _NAME.match(name):
        raise LrdslError(f"{name!r} is not a channel name: an identifier, dots allowed (e.g. ema, loss.kl)")
    return Channel(name, "a free value, read by the user's code", config_key=name)


def target(name: str) -> Channel:
    """The optimizer target called ``name``; anything else is an :class:`LrdslError` listing them."""
    found = CHANNELS.get(name)
    if found is None:
        raise LrdslError(f"unknown target {name!r}; lrdsl schedules {', '.join(TARGETS)}")
    return found


def of_config_key(key: str) -> Channel | None:
    """The target whose expression stands under config key ``key`` (``expr``: the LR), or None."""
    return next((c for c in CHANNELS.values() if c.config_key == key), None)


def below_one(name: str) -> bool:
    """Whether ``name``'s values must stay below 1 (momentum, beta2)."""
    found = CHANNELS.get(name)
    return found is not None and found.below == 1.0
