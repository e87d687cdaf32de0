"""Where sampling time goes: the time spent inside the network, measured around every network call.

``NetworkTimer(model)`` is a context manager that wraps the model's network entry points — ``forward`` (a
denoiser pass), ``encode`` (a trunk pass of the speculative sampler), ``verify`` (a verifier pass) and the
output head called on its own (the speculative draft) — for the duration of the ``with`` block. Each
*outermost* call is timed with ``time.perf_counter``, synchronising the accelerator before and after
(``torch.cuda.synchronize``; nothing to do on the CPU, where operators return when done), so queued work is
charged to the call that issued it; calls nested inside another (``forward`` → ``encode`` → output head) are
not counted twice. With S = Σ network seconds and W = the wall clock of the sampling call:

    fraction outside the network = 1 − S / W

— the categorical draws, SUBS, top-p, the sampler's bookkeeping and the synchronisations themselves. The
synchronisation before a call can only move time *into* S (waiting for earlier work still queued), so on an
accelerator the fraction is a lower bound on the time the sampler adds; on the CPU it is exact up to the
timer's own overhead (two ``perf_counter`` reads per call).

Each call is also a ``torch.profiler.record_function`` range named ``scmdm.network.<entry>``, so a profile of
the same run shows the network calls as ranges: ``profile_outside`` reads the fraction off such a profile
independently of the timer (the profiler's own clock) and lists the operators that ran outside the ranges.

Time an eager model: under ``generate(compile_network=True)`` the wrappers would be traced into the compiled
graph. Counts: ``calls[entry]`` batched calls and ``rows[entry]`` sequences evaluated; for the denoising samplers
``rows["forward"]`` / batch is their NFE, for the speculative sampler ``rows["encode"]`` / batch (trunk passes)
and ``rows["verify"]`` / batch (verifier passes).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["ENTRY_POINTS", "RANGE_PREFIX", "NetworkTimer", "OutsideProfile", "profile_outside", "synchronize"]

ENTRY_POINTS = ("forward", "encode", "verify", "head")
RANGE_PREFIX = "scmdm.network."


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (CUDA, MPS); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


@dataclass
class NetworkTimer:
    """Times every outermost network call of ``model`` inside the ``with`` block (module docstring)."""

    model: nn.Module
    seconds: float = 0.0
    calls: Counter = field(default_factory=Counter)
    rows: Counter = field(default_factory=Counter)
    _depth: int = 0
    _patched: list[tuple[Any, str]] = field(default_factory=list)

    def _wrap(self, entry: str, method: Callable, device: torch.device) -> Callable:
        @functools.wraps(method)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:  # nested in a call already being timed
                return method(*args, **kwargs)
            self._depth += 1
            try:
                synchronize(device)
                start = time.perf_counter()
                with torch.profiler.record_function(RANGE_PREFIX + entry):
                    out = method(*args, **kwargs)
                    synchronize(device)
                self.seconds += time.perf_counter() - start
            finally:
                self._depth -= 1
            self.calls[entry] += 1
            self.rows[entry] += args[0].shape[0] if args and isinstance(args[0], torch.Tensor) else 0
            return out

        return timed

    def __enter__(self) -> NetworkTimer:
        if self._patched:
            raise RuntimeError("this NetworkTimer is already active")
        device = next(self.model.parameters()).device
        targets = [(self.model, "forward", "forward"), (self.model, "encode", "encode"),
                   (self.model, "verify", "verify"), (self.model.output_layer, "forward", "head")]
        for owner, name, entry in targets:
            if hasattr(owner, name):
                setattr(owner, name, self._wrap(entry, getattr(owner, name), device))  # an instance attribute
                self._patched.append((owner, name))
        return self

    def __exit__(self, *exc: object) -> None:
        for owner, name in self._patched:
            delattr(owner, name)  # the class's method is visible again
        self._patched.clear()

    def fraction_outside(self, wall_seconds: float) -> float:
        """1 − (time inside the network) / ``wall_seconds``."""
        if wall_seconds <= 0:
            raise ValueError(f"wall_seconds must be positive, got {wall_seconds}")
        return 1.0 - self.seconds / wall_seconds


@dataclass
class OutsideProfile:
    """``profile_outside``'s reading of a profile: the network ranges' total, the profiled span, and the
    operators that ran outside the ranges (name → self CPU µs, largest first)."""

    network_us: float
    span_us: float
    outside_ops: list[tuple[str, float]]

    @property
    def fraction_outside(self) -> float:
        return 1.0 - self.network_us / self.span_us


def profile_outside(prof: torch.profiler.profile, top: int = 10) -> OutsideProfile:
    """The fraction of the profiled span outside the ``scmdm.network.*`` ranges (a ``NetworkTimer`` was
    active inside ``prof``), by the profiler's clock, and the ``top`` operators by self CPU time outside them."""
    events = list(prof.events())
    ranges = [e for e in events if e.name.startswith(RANGE_PREFIX)]
    if not events:
        raise ValueError("the profile holds no events")
    start = min(e.time_range.start for e in events)
    end = max(e.time_range.end for e in events)
    outside: Counter = Counter()
    for e in events:
        if e.name.startswith(RANGE_PREFIX) or e.device_type != torch.autograd.DeviceType.CPU:
            continue
        parent, inside = e.cpu_parent, False
        while parent is not None:
            if parent.name.startswith(RANGE_PREFIX):
                inside = True
                break
            parent = parent.cpu_parent
        if not inside and e.name.startswith("aten::"):
            outside[e.name] += e.self_cpu_time_total
    return OutsideProfile(network_us=float(sum(e.time_range.elapsed_us() for e in ranges)),
                          span_us=float(end - start), outside_ops=outside.most_common(top))
