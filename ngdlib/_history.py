"""The one training loop and the one history type that every trainer of ngdlib uses (ground floor: imports only torch).

Every trainer (:func:`ngdlib.train.train`, :func:`ngdlib.approx_fisher.train_ngd`, :func:`ngdlib.losses.train_loss`,
:func:`ngdlib.stability.trace_ngd`, :func:`ngdlib.deep_linear.train_gd`, :func:`ngdlib.deep_linear.train_gd_batched`,
:func:`ngdlib.chatterjee.gradient_descent`, :func:`ngdlib.joint.train_joint_ngd`)
is a thin face on :func:`run_loop`: it says what to observe at an iterate and how to take a step; the loop owns the
iteration count, the early stop, the divergence rule and the :class:`History`.

**The divergence rule (one, everywhere).** Each trainer monitors one non-negative number per iterate (a residual norm
or a loss). A monitored value that is not finite *at the start* is a bad input and raises ``ValueError``. Later, the
run **stops and flags** ``history.diverged = True`` (with the reason in ``history.stop_reason``) as soon as the
monitored value is not finite or exceeds ``diverge_factor`` times its start, or when a later step itself cannot be
taken (e.g. a Gram matrix that turned singular: the step's ``ValueError`` becomes the stop reason; the *first* step's
``ValueError`` is raised, as a violated assumption of the input); the diverged iterate is not recorded, so every recorded entry is finite and
the last one is the last finite iterate. It never raises mid-run: a sweep over step sizes sees where it diverged.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

__all__ = ["History", "run_loop"]


@dataclass
class History:
    """What a trainer records, one entry per iterate k = 0, 1, ..., K (index k is before step k+1).

    Each recorded quantity is a *series*: a list reachable as an attribute (``hist.residual_norm``) and as a float64
    tensor (``hist.tensor("residual_norm")``). The first series is the monitored one (the quantity of the divergence
    rule). Series that belong to a step rather than an iterate (e.g. ``step_constant`` of
    :func:`ngdlib.stability.trace_ngd`) have one entry per step taken, K of them.

    Attributes:
        method: what was run (``"ngd"``, ``"kfac"``, ``"gd"``, a Fisher variant, ``"gauss-newton"``, ...).
        eta: the step size :math:`\\eta`.
        series: the recorded series, by name, in recording order.
        diverged: True if the run stopped by the divergence rule (stated in :mod:`ngdlib.train`).
        stop_reason: why the run stopped: ``"steps done"``, ``"tolerance reached"`` or the divergence.
    """

    method: str
    eta: float
    series: dict = field(default_factory=dict)
    diverged: bool = False
    stop_reason: str = ""

    def __getattr__(self, name: str):
        series = self.__dict__.get("series")
        if series is not None and name in series:
            return series[name]
        raise AttributeError(f"{type(self).__name__} has no attribute or recorded series {name!r}")

    def series_names(self) -> list[str]:
        """The names of the recorded series, in recording order."""
        return list(self.series)

    @property
    def steps(self) -> int:
        """Number of steps taken: the length of the first (monitored) series minus one."""
        return len(next(iter(self.series.values()))) - 1

    def tensor(self, key: str) -> torch.Tensor:
        """One recorded series as a float64 CPU tensor.

        Raises:
            ValueError: if ``key`` is not a recorded series.
        """
        names = self.series_names()
        if key not in names:
            raise ValueError(f"{key!r} is not a recorded series of this History; one of {names}")
        return torch.tensor(self.series[key], dtype=torch.float64)

    def append(self, **values) -> None:
        """Append one entry to each named series (creating a series on first use)."""
        for k, v in values.items():
            self.series.setdefault(k, []).append(v)


def run_loop(hist: History, observe, advance, steps: int, *, tol: float = 0.0, diverge_factor: float = 1e6,
             monitor: str, bar=None) -> History:
    """The training loop: for k = 0 .. ``steps``, observe the iterate, apply the divergence rule and the early stop,
    record, and take a step.

    Args:
        hist: the :class:`History` to fill (its series may be declared empty beforehand, to fix their order).
        observe: ``observe(k) -> (value, record)``: the monitored value at iterate k and a dict of the other series
            entries for iterate k. It may raise ``ValueError`` at k = 0 for a start that violates an assumption.
        advance: ``advance(k) -> str | None``: take step k+1 (it may append per-step series); a string, or a
            ``ValueError`` at k >= 1, means the step could not be taken (the run stops with ``diverged = True`` and
            that reason); a ``ValueError`` at k = 0 propagates.
        steps: the number of steps.
        tol: stop (``"tolerance reached"``) once the monitored value is ``<= tol``.
        diverge_factor: stop (``diverged``) once the monitored value exceeds this times its start.
        monitor: the name of the monitored series (recorded first, and named in the messages).
        bar: an optional progress bar with ``update(1)``.

    Raises:
        ValueError: if the monitored value at the start is not finite (the start must be a finite point), or
            ``observe(0)`` or the first step refuses the input.
    """
    start = None
    for k in range(steps + 1):
        value, record = observe(k)
        value = float(value)
        if start is None:
            if not math.isfinite(value):
                raise ValueError(f"the {monitor} at the start is {value}, not finite: the run must start at a finite point "
                                 "(rescale the inputs, the targets or the initialisation)")
            start = value
        if not math.isfinite(value) or value > diverge_factor * max(start, 1e-300):
            hist.diverged = True
            hist.stop_reason = f"{monitor} {value:.3e} blew up at iterate {k} (diverge_factor {diverge_factor:g})"
            break
        hist.append(**{monitor: value}, **record)
        if k == steps or value <= tol:
            hist.stop_reason = "tolerance reached" if value <= tol else "steps done"
            break
        try:
            reason = advance(k)
        except ValueError as err:          # a step refused by name (e.g. a Gram matrix turned singular)
            if k == 0:
                raise                      # at the start it is a violated assumption of the input: refuse it
            reason = f"step {k + 1} refused: {err}"
        if reason:
            hist.diverged, hist.stop_reason = True, reason
            break
        if bar is not None:
            bar.update(1)
    return hist
