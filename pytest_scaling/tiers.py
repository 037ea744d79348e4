"""Tiers: how large a scaling run is (smoke for the plugin's own tests, cpu by default, gpu with --gpu)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class CoordCheckGrid:
    """Coordinate check: one run per width at a fixed LR, activations probed at steps 0..steps.

    ``widths`` empty means the family's own widths."""

    widths: tuple[int, ...]
    lr: float
    steps: int
    batch_size: int
    max_abs_slope: float


@dataclass(frozen=True)
class TransferGrid:
    """LR transfer and "wider is better": widths x log2-spaced LRs x the tier's seeds."""

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    steps: int
    batch_size: int
    max_abs_slope: float
    wider_rtol: float


@dataclass(frozen=True)
class StabilityGrid:
    """LR sensitivity and logit stability (Wortsman et al.): widths x LRs up to eta_max (the last LR).

    Trained with Wortsman et al.'s recipe (AdamW, warmup + cosine, clip 1.0, independent weight decay
    ``weight_decay``), attention and output logits probed every ``probe_every`` steps. ``max_sensitivity``
    bounds S; a run's max attention logit or |log Z| past its cap counts as diverged, and |log Z| in the
    second half more than ``max_log_z_drift`` nats above its value at step 0 as drifted (it starts near
    log(vocab); z-loss holds it near 0; inf: not checked). ``stacking`` is the sweep's (on 2 CPU cores
    stacked GPT runs were slower than a per-run loop); ``seeds`` caps the session's seeds (None: all of them)."""

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
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


@dataclass(frozen=True)
class PowerLawGrid:
    """Power law and held-out extrapolation: widths x LRs x the tier's seeds, one loss per size at its best LR.

    ``min_r2`` bounds the fit's R² in log space; the largest ``holdout`` widths are predicted from a fit on
    the others, within ``max_rel_error``, and no held-out residual may exceed ``n_sigma`` seed std."""

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    steps: int
    batch_size: int
    min_r2: float
    holdout: int
    max_rel_error: float
    n_sigma: float = 3.0


def _log10_grid(lo: float, hi: float, per_decade: int = 2) -> tuple[float, ...]:
    """10^lo .. 10^hi, ``per_decade`` LRs per decade."""
    n = round((hi - lo) * per_decade)
    return tuple(10.0 ** (lo + i / per_decade) for i in range(n + 1))


def _log2_grid(lo: int, hi: int) -> tuple[float, ...]:
    return tuple(2.0**e for e in range(lo, hi + 1))


@dataclass(frozen=True)
class EpsilonGrid:
    """Adam epsilon (Everett et al.): widths x a few LRs with AdamW at ``eps`` (a family's own optimizer factory keeps its
    own ε), gradient RMS and the fraction of coordinates with √v̂ < ε probed every ``probe_every`` steps.

    The second half of training is asserted at the largest width, every layer and LR: fraction ≤
    ``max_frac_below_eps`` and gradient RMS ≥ ``min_rms_ratio``·ε. ``stacking`` and ``seeds`` as in StabilityGrid."""

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    steps: int
    batch_size: int
    probe_every: int
    max_frac_below_eps: float
    min_rms_ratio: float
    eps: float = 1e-8
    stacking: str = "auto"
    seeds: int | None = None


@dataclass(frozen=True)
class DepthGrid:
    """Depth: one family per depth in ``depths``, each swept on ``sweep`` (widths x LRs, Wortsman et al.'s recipe;
    its S bound and logit caps belong to the stability checks and are not used here).

    At every width of the sweep, LR sensitivity S of the seed-mean loss curves may grow by at most
    ``max_growth_per_doubling`` per doubling of depth (least-squares slope of S on log2 depth)."""

    depths: tuple[int, ...]
    sweep: StabilityGrid
    max_growth_per_doubling: float


@dataclass(frozen=True)
class DepthCoordGrid(CoordCheckGrid):
    """Depth coordinate check (Depth-μP): the coordinate-check grid run once per depth in ``depths``, at each of
    ``widths`` (given, not the family's) over the tier's seeds. The residual stream the readout reads (input of the
    model's last normalisation layer) is probed at steps 0..steps; its size may scale with depth by at most
    ``max_abs_slope`` (slope of log size on log depth, either sign) at every width and step."""

    depths: tuple[int, ...]


@dataclass(frozen=True)
class CurveTransferGrid:
    """LR transfer read off the whole loss-vs-LR curve: ``widths`` x ``lrs`` x the first ``seeds`` of the session's
    seeds (all if None; constant LR, Adam). The seed-mean shift of each width's curve from the first width's (log2 LR,
    ``metrics.curve_shift``) may change by at most ``max_abs_slope`` per doubling of width. For families whose curves
    have flat tops, where η* is noise."""

    widths: tuple[int, ...]
    lrs: tuple[float, ...]
    steps: int
    batch_size: int
    max_abs_slope: float
    seeds: int | None = None


@dataclass(frozen=True, kw_only=True)
class DepthTransferGrid(CurveTransferGrid):
    """LR transfer across depth: the curve-transfer grid run once per depth in ``depths``; at the widest width the
    curve's shift from the shallowest depth's may change by at most ``max_abs_slope`` per doubling of depth."""

    depths: tuple[int, ...]


@dataclass(frozen=True)
class Tier:
    """One tier: its name, the device kind it needs ("cpu" or "cuda"), its default seed count,
    what it is for, and the grids and thresholds of each property (one place, per tier)."""

    name: str
    device_kind: str
    seeds: int
    description: str
    coord_check: CoordCheckGrid
    lr_transfer: TransferGrid
    stability: StabilityGrid
    adam_epsilon: EpsilonGrid
    power_law: PowerLawGrid
    curve_transfer: CurveTransferGrid | None = None  # None: the curve-transfer check skips
    depth: DepthGrid | None = None  # None: the depth-sensitivity check skips
    depth_coord: DepthCoordGrid | None = None  # None: the depth coordinate check skips
    depth_transfer: DepthTransferGrid | None = None  # None: the depth LR-transfer check skips


# Calibrated over 10 seeds (benchmarks/RESULTS.md, "GPT LR transfer"): the μP GPT with a zero readout, base width 32,
# reads -0.105 to -0.125 per seed (std 0.008), SP -1.3: one seed holds the bound with 15σ to spare.
CPU_CURVE_TRANSFER = CurveTransferGrid(widths=(32, 64, 128), lrs=_log2_grid(-11, -4), steps=100, batch_size=32,
                                       max_abs_slope=0.25, seeds=1)

# Calibrated over 10 seeds (benchmarks/RESULTS.md, "LR transfer across depth"); width 32 is asserted, 16 recorded.
# The bound sits between Depth-μP's worst seed (+0.07) and 1/√L-only's best (-0.20).
CPU_DEPTH_TRANSFER = DepthTransferGrid(depths=(2, 8), widths=(16, 32), lrs=_log2_grid(-10, -4), steps=40, batch_size=32,
                                       max_abs_slope=0.12)

# Calibrated over 10 seeds (benchmarks/RESULTS.md, "Depth: LR sensitivity growth"): the growth of S per doubling of
# depth, max over the widths, is 0.001-0.006 per seed under Depth-μP and 0.026-0.145 with plain residuals (the top LR
# breaks at depth 8). Every width is asserted.
CPU_DEPTH = DepthGrid(depths=(2, 8), max_growth_per_doubling=0.01,
                      sweep=StabilityGrid(widths=(16, 32), lrs=_log10_grid(-2, -0.75, per_decade=4), steps=100,
                                          batch_size=16, warmup=20, probe_every=20, max_sensitivity=0.1,
                                          attention_logit_cap=1e3, log_z_cap=20.0))

TIERS: dict[str, Tier] = {
    tier.name: tier
    for tier in (
        Tier(
            "smoke", "cpu", 1, "2-3 tiny widths, 5 learning rates: seconds; for testing the plugin itself",
            coord_check=CoordCheckGrid(widths=(32, 64, 128), lr=1e-2, steps=3, batch_size=16, max_abs_slope=0.15),
            lr_transfer=TransferGrid(widths=(32, 64, 128), lrs=_log2_grid(-12, -4), steps=100, batch_size=64,
                                     max_abs_slope=0.25, wider_rtol=0.02),
            stability=StabilityGrid(widths=(32, 64), lrs=_log10_grid(-2.5, -0.5, per_decade=1), steps=40, batch_size=16, warmup=4,
                                    probe_every=5, max_sensitivity=0.1, attention_logit_cap=1e3, log_z_cap=20.0),
            adam_epsilon=EpsilonGrid(widths=(32, 64), lrs=(1e-2,), steps=20, batch_size=8, probe_every=5,
                                     max_frac_below_eps=0.25, min_rms_ratio=10.0, stacking="none", seeds=1),
            power_law=PowerLawGrid(widths=(16, 32, 64, 128), lrs=_log2_grid(-10, -4), steps=60, batch_size=32, min_r2=0.9,
                                   holdout=1, max_rel_error=0.05),
        ),
        Tier(
            "cpu", "cpu", 2, "small widths on 2 CPU cores: within 10 minutes; the default",
            coord_check=CoordCheckGrid(widths=(64, 128, 256, 512, 1024), lr=1e-2, steps=3, batch_size=32, max_abs_slope=0.15),
            lr_transfer=TransferGrid(widths=(128, 256, 512), lrs=_log2_grid(-14, -4), steps=300, batch_size=128,
                                     max_abs_slope=0.25, wider_rtol=0.01),
            # Calibrated over 5 seeds with the other cpu grids (benchmarks/calibrate.py, RESULTS.md "Threshold calibration").
            stability=StabilityGrid(widths=(64, 128), lrs=_log10_grid(-3, -0.5), steps=250, batch_size=32, warmup=25,
                                    probe_every=25, max_sensitivity=0.1, attention_logit_cap=1e3, log_z_cap=20.0,
                                    max_log_z_drift=3.0, seeds=1),
            # Calibrated over 5 seeds (benchmarks/RESULTS.md, "Adam epsilon").
            adam_epsilon=EpsilonGrid(widths=(64, 128), lrs=(1e-3, 1e-2), steps=100, batch_size=32, probe_every=10,
                                     max_frac_below_eps=0.25, min_rms_ratio=10.0, stacking="none", seeds=1),
            # The transfer grid's config and LRs, so the widths both use train once.
            power_law=PowerLawGrid(widths=(32, 64, 128, 256, 512), lrs=_log2_grid(-14, -4), steps=300, batch_size=128,
                                   min_r2=0.98, holdout=1, max_rel_error=0.01),
            curve_transfer=CPU_CURVE_TRANSFER,
            depth=CPU_DEPTH,
            depth_coord=DepthCoordGrid(depths=(2, 4, 8, 16), widths=(32, 64), lr=3e-2, steps=4, batch_size=32,
                                       max_abs_slope=0.2),
            depth_transfer=CPU_DEPTH_TRANSFER,
        ),
        Tier(
            "gpu", "cuda", 3, "wide models, more learning rates and seeds on one GPU: within 10 minutes",
            coord_check=CoordCheckGrid(widths=(256, 512, 1024, 2048, 4096), lr=1e-2, steps=5, batch_size=64, max_abs_slope=0.15),
            lr_transfer=TransferGrid(widths=(256, 512, 1024, 2048), lrs=_log2_grid(-16, -4), steps=1000, batch_size=256,
                                     max_abs_slope=0.25, wider_rtol=0.01),
            stability=StabilityGrid(widths=(128, 256, 512, 1024), lrs=_log10_grid(-4, -0.5), steps=1000, batch_size=64,
                                    warmup=100, probe_every=50, max_sensitivity=0.1, attention_logit_cap=1e3, log_z_cap=20.0,
                                    max_log_z_drift=3.0),
            adam_epsilon=EpsilonGrid(widths=(256, 512, 1024, 2048), lrs=(1e-3, 10**-2.5, 1e-2), steps=1000, batch_size=64,
                                     probe_every=50, max_frac_below_eps=0.25, min_rms_ratio=10.0),
            power_law=PowerLawGrid(widths=(64, 128, 256, 512, 1024, 2048), lrs=_log2_grid(-16, -4), steps=1000,
                                   batch_size=256, min_r2=0.98, holdout=1, max_rel_error=0.01),
            # GPT curve transfer, depth sensitivity and depth LR transfer: the cpu tier's grids (the last two over the gpu
            # tier's 3 seeds), since no wider ones have been calibrated (no GPU yet). The depth coordinate grid is wider,
            # calibrated on a CPU (RESULTS.md, "Depth-μP").
            curve_transfer=CPU_CURVE_TRANSFER,
            depth=CPU_DEPTH,
            depth_coord=DepthCoordGrid(depths=(2, 4, 8, 16, 32), widths=(128, 256), lr=3e-2, steps=5, batch_size=64,
                                       max_abs_slope=0.2),
            depth_transfer=CPU_DEPTH_TRANSFER,
        ),
    )
}


def resolve_tier(config: pytest.Config) -> Tier:
    """The run's tier: --scaling-tier, else gpu when --gpu is given, else ini scaling_tier, else cpu."""
    try:
        ini_name = config.getini("scaling_tier")
    except TypeError as exc:  # a non-string value in a native TOML config
        raise pytest.UsageError(str(exc)) from None
    name = config.getoption("scaling_tier") or ("gpu" if config.getoption("gpu") else None) or ini_name or "cpu"
    if name not in TIERS:
        raise pytest.UsageError(f"unknown scaling tier {name!r}; choose from {', '.join(TIERS)}")
    return TIERS[name]
