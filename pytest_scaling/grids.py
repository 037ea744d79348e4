"""The grid types a property runs on: widths, LRs, steps and the thresholds its verdict uses.

A grid's LRs and widths are either absolute or placed on the family (``RelativeLRs`` on the anchor of its
LR-range step, ``RelativeWidths`` on its base width; see ``pytest_scaling.placement``). Each property module
(``pytest_scaling.properties``) holds its grid per tier; these types are shared, with no science in them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union


def log10_grid(lo: float, hi: float, per_decade: int) -> tuple[float, ...]:
    """10^lo .. 10^hi, ``per_decade`` LRs a decade."""
    count = int(round((hi - lo) * per_decade)) + 1
    return tuple(10.0 ** (lo + i / per_decade) for i in range(count))


@dataclass(frozen=True)
class LRRangeGrid:
    """The LR-range step of a tier (``pytest_scaling.lr_range``): ``steps`` of Adam at a constant LR at the family's
    base width on its first seed, over a coarse scan of 10^lo .. 10^hi one LR a decade (widened by a decade a side at
    most ``max_widen`` times), then ``per_decade`` LRs a decade within a decade of its best."""

    lo: float
    hi: float
    per_decade: int
    steps: int
    batch_size: int
    max_widen: int = 3


@dataclass(frozen=True)
class RelativeLRs:
    """An LR grid placed on a family's anchor: anchor × 2^(lo + i·step) for i = 0, 1, ... up to ``hi`` octaves."""

    lo: float
    hi: float
    step: float = 1.0

    def __post_init__(self) -> None:
        if not (self.step > 0 and self.hi >= self.lo):
            raise ValueError(f"RelativeLRs needs lo <= hi and step > 0, got lo={self.lo}, hi={self.hi}, step={self.step}")

    def at(self, anchor: float) -> tuple[float, ...]:
        """The absolute grid around ``anchor``."""
        count = int(round((self.hi - self.lo) / self.step)) + 1
        return tuple(anchor * 2.0 ** (self.lo + i * self.step) for i in range(count))



@dataclass(frozen=True)
class RelativeWidths:
    """Widths placed on a family's base width: base × each multiplier. A family that gives its own ``widths``, at
    least as many, has its smallest ones used instead."""

    multipliers: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.multipliers) < 1 or any(b <= a for a, b in zip(self.multipliers, self.multipliers[1:])) or \
                self.multipliers[0] <= 0:
            raise ValueError(f"RelativeWidths needs increasing positive multipliers, got {self.multipliers}")

    def at(self, base_width: int) -> tuple[int, ...]:
        """The absolute widths for a family of ``base_width``."""
        return tuple(max(1, round(base_width * m)) for m in self.multipliers)


Widths = Union[tuple[int, ...], RelativeWidths]
LRs = Union[tuple[float, ...], RelativeLRs]
#: Octaves in a half and a quarter of a decade: relative grids on the 1-3-10 spacing of Wortsman et al.'s sweeps.
HALF_DECADE = math.log2(10) / 2
QUARTER_DECADE = math.log2(10) / 4

@dataclass(frozen=True)
class CoordCheckGrid:
    """Coordinate check: one run per width at a fixed LR, activations probed at steps 0..steps.

    Two verdicts (``checks.coord_check``): the parametrization (steps 0 and 1: init, multipliers and the first
    update, where a wrong one already shows) bounded by ``max_abs_slope``, and the training dynamics (steps 2..steps,
    growth only) bounded by ``max_later_slope`` (None: the same bound). A verdict within noise of its bound is rerun
    on more seeds, up to ``max_seeds`` (None: the session's), then called inconclusive. ``widths`` empty means the
    family's own widths."""

    widths: Widths
    lr: float | RelativeLRs
    steps: int
    batch_size: int
    max_abs_slope: float
    max_later_slope: float | None = None
    max_seeds: int | None = None

    def __post_init__(self) -> None:
        if self.max_seeds is not None and (isinstance(self.max_seeds, bool) or not isinstance(self.max_seeds, int)
                                           or self.max_seeds < 1):
            raise ValueError(f"{type(self).__name__}: max_seeds must be a positive int or None, got {self.max_seeds!r}")
        if self.max_later_slope is not None and not self.max_later_slope > 0:
            raise ValueError(f"{type(self).__name__}: max_later_slope must be positive or None, got {self.max_later_slope!r}")

    @property
    def later_bound(self) -> float:
        """The training dynamics' bound."""
        return self.max_abs_slope if self.max_later_slope is None else self.max_later_slope


@dataclass(frozen=True)
class TransferGrid:
    """LR transfer and "wider is better": widths x log2-spaced LRs x the first ``seeds`` of the session's seeds (all if
    None), Adam at a constant LR. The transfer slope (η*, or the curve's shift: ``metrics.curve_shift``) may be at most
    ``max_abs_slope`` per doubling of width; at the LR tuned at the narrowest width a wider model may be at most
    ``wider_rtol`` worse."""

    widths: Widths
    lrs: LRs
    steps: int
    batch_size: int
    max_abs_slope: float
    wider_rtol: float = 0.01
    seeds: int | None = None


@dataclass(frozen=True)
class StabilityGrid:
    """LR sensitivity and logit stability (Wortsman et al.): widths x LRs up to eta_max (the last LR).

    Trained with Wortsman et al.'s recipe (AdamW, warmup + cosine, clip 1.0, independent weight decay
    ``weight_decay``), attention and output logits probed every ``probe_every`` steps. ``max_sensitivity``
    bounds S, in nats or (``relative_sensitivity``) as a fraction of the curve's depth L0 − L*, which carries from
    one task to another (``metrics.lr_sensitivity``); a run's max attention logit or |log Z| past its cap counts as diverged, and |log Z| in the
    second half more than ``max_log_z_drift`` nats above its value at step 0 as drifted (it starts near
    log(vocab); z-loss holds it near 0; inf: not checked). ``stacking`` is the sweep's (on 2 CPU cores
    stacked GPT runs were slower than a per-run loop); ``seeds`` caps the session's seeds (None: all of them)."""

    widths: Widths
    lrs: LRs
    steps: int
    batch_size: int
    warmup: int
    probe_every: int
    max_sensitivity: float
    attention_logit_cap: float
    log_z_cap: float
    weight_decay: float = 1e-4
    max_log_z_drift: float = math.inf
    stacking: str = "auto"
    seeds: int | None = None
    relative_sensitivity: bool = False


@dataclass(frozen=True)
class PowerLawGrid:
    """Power law and held-out extrapolation: widths x LRs x the tier's seeds, one loss per size at its best LR.

    ``min_r2`` bounds the fit's R² in log space; the largest ``holdout`` widths are predicted from a fit on
    the others, within ``max_rel_error``, and no held-out residual may exceed ``n_sigma`` seed std. ``seeds``: how
    many (None: the session's; more continue its sequence, ``ScalingSession.first_seeds``)."""

    widths: Widths
    lrs: LRs
    steps: int
    batch_size: int
    min_r2: float
    holdout: int
    max_rel_error: float
    n_sigma: float = 3.0
    seeds: int | None = None


@dataclass(frozen=True)
class EpsilonGrid:
    """Adam epsilon (Everett et al.): widths x a few LRs with AdamW at ``eps`` (a family's own optimizer factory keeps its
    own ε), the RMS of √v̂ and the fraction of coordinates with √v̂ < ε probed every ``probe_every`` steps.

    The second half of training is asserted at the largest width, every layer and LR: fraction ≤
    ``max_frac_below_eps`` and RMS of √v̂ ≥ ``min_rms_ratio``·ε. ``stacking`` and ``seeds`` as in StabilityGrid."""

    widths: Widths
    lrs: LRs
    steps: int
    batch_size: int
    probe_every: int
    max_frac_below_eps: float
    min_rms_ratio: float
    eps: float = 1e-8
    stacking: str = "auto"
    seeds: int | None = None


@dataclass(frozen=True)
class DecayGrid:
    """Weight decay's timescale (``pytest_scaling.decay``): one optimizer step per width at LR ``lr``, no training.

    Each decayed parameter's τ = 1/(fraction removed a step) may change by at most ``max_abs_slope`` per doubling of
    width (log2 τ on log2 width): 0 when the decay is independent of a width-scaled LR, +1 for a μP hidden matrix under
    torch AdamW's ``weight_decay``. A family trained with the recipe's optimizer is measured under the recipe's
    independent decay ``weight_decay``, as the stability sweeps train it."""

    widths: Widths
    lr: float | RelativeLRs
    max_abs_slope: float
    weight_decay: float = 1e-4


@dataclass(frozen=True)
class DepthGrid:
    """Depth: one family per depth in ``depths``, each swept on ``sweep`` (widths x LRs, Wortsman et al.'s recipe;
    its S bound and logit caps belong to the stability checks and are not used here).

    At every width of the sweep, LR sensitivity S of the seed-mean loss curves may grow by at most
    ``max_growth_per_doubling`` per doubling of depth (least-squares slope of S on log2 depth)."""

    depths: tuple[int, ...]
    sweep: StabilityGrid
    max_growth_per_doubling: float


@dataclass(frozen=True, kw_only=True)
class DepthCoordGrid(CoordCheckGrid):
    """Depth coordinate check (Depth-μP): the coordinate-check grid run once per depth in ``depths``, at each of
    ``widths`` (given, not the family's) over the tier's seeds. The residual stream the readout reads (input of the
    model's last normalisation layer) is probed at steps 0..steps; at step 0 its size may scale with depth by at most
    ``max_abs_slope`` either way (slope of log size on log depth), and after it grow by at most that per doubling of
    depth, at every width (``assert_depth_coord_check``)."""

    depths: tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class DepthTransferGrid(TransferGrid):
    """LR transfer across depth: the curve-transfer grid run once per depth in ``depths``; at the widest width the
    curve's shift from the shallowest depth's may change by at most ``max_abs_slope`` per doubling of depth."""

    depths: tuple[int, ...]


def half_decades(lo: int, hi: int) -> RelativeLRs:
    """anchor × 10^(k/2) for k = lo..hi."""
    return RelativeLRs(lo * HALF_DECADE, hi * HALF_DECADE, HALF_DECADE)


def quarter_decades(lo: int, hi: int) -> RelativeLRs:
    """anchor × 10^(k/4) for k = lo..hi."""
    return RelativeLRs(lo * QUARTER_DECADE, hi * QUARTER_DECADE, QUARTER_DECADE)
