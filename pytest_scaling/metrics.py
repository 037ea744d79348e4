"""Scaling metrics from sweep losses: optimal LR, LR transfer, LR sensitivity, coord slopes, logit trends."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from . import _validate as check
from ._result import Result, frozen


def _diverged_as_initial(losses: np.ndarray, initial_loss: float | None) -> np.ndarray:
    """Diverged runs (non-finite, or above the initial loss) count as the initial loss.

    Without an initial loss, non-finite runs count as the worst finite loss of the grid (+inf when none is finite).
    """
    finite = np.isfinite(losses)
    if initial_loss is None:
        cap = losses[finite].max() if finite.any() else np.inf
        return np.where(finite, losses, cap)
    return np.where(finite & (losses <= initial_loss), losses, initial_loss)


def _parabola_vertex(x: np.ndarray, y: np.ndarray) -> float:
    """Vertex of the parabola through three points, clamped to [x0, x2]; the middle x when it is not convex."""
    (x0, x1, x2), (y0, y1, y2) = x, y
    curvature = ((y2 - y1) / (x2 - x1) - (y1 - y0) / (x1 - x0)) / (x2 - x0)
    if curvature <= 0:
        return float(x1)
    slope01 = (y1 - y0) / (x1 - x0)  # p'((x0 + x1) / 2) of p(x) = curvature·x² + …
    vertex = (x0 + x1) / 2 - slope01 / (2 * curvature)
    return float(np.clip(vertex, x0, x2))


@dataclass(frozen=True, eq=False)
class OptimalLR(Result):
    """η* for one loss-vs-LR curve; lr is None when the grid does not bracket the optimum."""

    lr: float | None
    log2_lr: float | None
    loss_at_opt: float  # minimum grid loss
    argmin: int
    inconclusive: bool
    reason: str
    lrs: np.ndarray
    losses: np.ndarray  # after diverged runs were set to the initial loss


def optimal_lr(lrs: ArrayLike, losses: ArrayLike, *, initial_loss: float | None = None) -> OptimalLR:
    """η* = vertex of the quadratic in log2 η through the grid argmin and its two neighbours.

    An argmin at a grid edge is inconclusive (η* may lie outside the grid), as is a grid where every run diverged.
    """
    lrs = check.lr_grid(lrs)
    raw = check.vector("losses", losses, finite=False)
    check.same_length(lrs=lrs, losses=raw)
    if initial_loss is not None:
        initial_loss = check.finite_scalar("initial_loss", initial_loss)
    curve = _diverged_as_initial(raw, initial_loss)
    if not np.all(np.isfinite(curve)):
        raise ValueError("every loss is non-finite and no initial_loss was given")
    i = int(np.argmin(curve))
    reason = ""
    if initial_loss is not None and np.all(curve >= initial_loss):
        reason = "every run diverged or stayed at the initial loss: lower the LR grid"
    elif i == 0:
        reason = "optimum at the lower edge of the LR grid: widen the LR grid"
    elif i == len(lrs) - 1:
        reason = "optimum at the upper edge of the LR grid: widen the LR grid"
    log2_lr = None if reason else _parabola_vertex(np.log2(lrs[i - 1 : i + 2]), curve[i - 1 : i + 2])
    return OptimalLR(
        lr=None if log2_lr is None else float(2.0**log2_lr), log2_lr=log2_lr, loss_at_opt=float(curve[i]),
        argmin=i, inconclusive=bool(reason), reason=reason, lrs=frozen(lrs), losses=frozen(curve),
    )


def _initial_losses(initial_loss: ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    """A scalar or [width, seed] initial loss, broadcast to [width, seed]."""
    arr = np.asarray(initial_loss, dtype=float)
    if arr.ndim != 0:
        arr = check.shaped("initial_loss", arr, shape)
    elif not np.isfinite(arr):
        raise ValueError("initial_loss must be finite")
    return np.broadcast_to(arr, shape)


def _sweep(widths: ArrayLike, lrs: ArrayLike, losses: ArrayLike, name: str = "widths",
           min_sizes: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate a [size, lr, seed] sweep."""
    widths = check.increasing(name, widths, min_len=min_sizes)
    lrs = check.lr_grid(lrs)
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 3 or losses.shape[:2] != (widths.size, lrs.size):
        raise ValueError(f"losses must have shape [{name}={widths.size}, lr={lrs.size}, seed], got {losses.shape}")
    if losses.shape[2] == 0:
        raise ValueError("losses has no seeds")
    return widths, lrs, losses


def _ls_slope(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Least-squares slope of y on x over the masked entries of the last two axes (batched over leading axes)."""
    m = mask.astype(float)
    count = m.sum(axis=(-2, -1), keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        x_mean = (m * x).sum(axis=(-2, -1), keepdims=True) / count
        y0 = np.where(mask, y, 0.0)
        y_mean = (m * y0).sum(axis=(-2, -1), keepdims=True) / count
        dx = (x - x_mean) * m
        return ((dx * (y0 - y_mean)).sum(axis=(-2, -1)) / (dx * dx).sum(axis=(-2, -1)))


@dataclass(frozen=True, eq=False)
class TransferResult(Result):
    """How η* moves with width: slope s of log2 η* on log2 width (0 = perfect transfer)."""

    widths: np.ndarray
    lrs: np.ndarray
    log2_lr_opt: np.ndarray  # [width, seed]; NaN where inconclusive
    mean_log2_lr: np.ndarray  # [width] over conclusive seeds; NaN where none
    n_conclusive: np.ndarray  # [width]
    n_seeds: int
    slope: float | None
    intercept: float | None
    ci: tuple[float, float] | None  # 95% bootstrap over seeds; None with one seed
    inconclusive: bool
    reason: str
    inconclusive_cells: tuple[tuple[float, int, str], ...]  # (width, seed index, reason)

    @property
    def seed_slopes(self) -> np.ndarray:
        """The slope measured on each seed alone, [seed]; NaN where fewer than two widths are conclusive."""
        return log2_slopes(self.widths, self.log2_lr_opt)


def log2_slopes(sizes: ArrayLike, values: ArrayLike) -> np.ndarray:
    """Least-squares slope of each column of ``values`` [size, column] on log2 size, over its finite entries;
    NaN for a column with fewer than two."""
    x = np.broadcast_to(np.log2(np.asarray(sizes, dtype=float))[:, None], np.shape(values))
    values = np.asarray(values, dtype=float)
    ok = np.isfinite(values)
    slopes = _ls_slope(x.T[:, :, None], values.T[:, :, None], ok.T[:, :, None])
    return np.where(ok.sum(axis=0) >= 2, slopes, np.nan)


def lr_transfer(widths: ArrayLike, lrs: ArrayLike, losses: ArrayLike, *, initial_loss: ArrayLike | None = None,
                n_boot: int = 1000, seed: int = 0) -> TransferResult:
    """η* per (width, seed) from losses [width, lr, seed], and the least-squares slope of log2 η* on log2 width.

    The CI resamples seeds with replacement within each width. Fewer than two widths with a
    conclusive η* make the whole result inconclusive.
    """
    widths, lrs, losses = _sweep(widths, lrs, losses, min_sizes=2)
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    n_w, _, n_s = losses.shape
    init = None if initial_loss is None else _initial_losses(initial_loss, (n_w, n_s))
    eta = np.full((n_w, n_s), np.nan)
    cells = []
    for w in range(n_w):
        for s in range(n_s):
            opt = optimal_lr(lrs, losses[w, :, s], initial_loss=None if init is None else init[w, s])
            if opt.inconclusive:
                cells.append((float(widths[w]), s, opt.reason))
            else:
                eta[w, s] = opt.log2_lr
    ok = np.isfinite(eta)
    n_ok = ok.sum(axis=1)
    with np.errstate(invalid="ignore"):
        mean = np.where(n_ok > 0, np.nansum(eta, axis=1) / np.maximum(n_ok, 1), np.nan)
    x = np.broadcast_to(np.log2(widths)[:, None], eta.shape)
    slope = intercept = ci = None
    reason = ""
    if np.count_nonzero(n_ok) < 2:
        reason = "fewer than two widths have a conclusive optimal LR: widen the LR grid"
    else:
        slope = float(_ls_slope(x, eta, ok))
        intercept = float(np.mean(eta[ok]) - slope * np.mean(x[ok]))
        if n_s > 1:
            rng = np.random.default_rng(seed)
            idx = rng.integers(0, n_s, size=(n_boot, n_w, n_s))
            boot_eta = np.take_along_axis(np.broadcast_to(eta, (n_boot, n_w, n_s)), idx, axis=2)
            boot = _ls_slope(np.broadcast_to(x, boot_eta.shape), boot_eta, np.isfinite(boot_eta))
            lo, hi = np.nanpercentile(boot, [2.5, 97.5])
            ci = (float(lo), float(hi))
    return TransferResult(
        widths=frozen(widths), lrs=frozen(lrs), log2_lr_opt=frozen(eta), mean_log2_lr=frozen(mean),
        n_conclusive=frozen(n_ok, int), n_seeds=n_s, slope=slope, intercept=intercept, ci=ci,
        inconclusive=bool(reason), reason=reason, inconclusive_cells=tuple(cells),
    )


def lr_sensitivity(lrs: ArrayLike, losses: ArrayLike, initial_loss: float, *, relative: bool = False) -> float:
    """Wortsman et al.'s S = mean over the grid of [min(L(η), L0) − L*]; non-finite losses count as L0.

    ``relative`` divides S by the curve's depth L0 − L*: the fraction of the improvement the best LR makes that an LR
    of the grid loses on average (0: every LR as good as the best; 1: none trains). S is in nats of one task, so
    its bound does not carry to another (another vocabulary, another floor); the fraction does, on a grid placed
    relative to the family's own LR range."""
    lrs = check.lr_grid(lrs)
    raw = check.vector("losses", losses, finite=False)
    check.same_length(lrs=lrs, losses=raw)
    initial = check.finite_scalar("initial_loss", initial_loss)
    curve = _diverged_as_initial(raw, initial)
    value = float(np.mean(curve - curve.min()))
    if not relative:
        return value
    depth = initial - float(curve.min())
    return value / depth if depth > 0 else 1.0


@dataclass(frozen=True, eq=False)
class SensitivityResult(Result):
    """LR sensitivity per size (width or depth) and seed, with its growth per doubling of size; ``relative``: S over the
    curve's depth L0 − L* (see ``lr_sensitivity``) rather than S in nats."""

    sizes: np.ndarray
    size_name: str
    values: np.ndarray  # [size, seed]
    mean: np.ndarray  # [size]
    growth_per_doubling: float | None  # least-squares slope of mean S on log2 size; None with one size
    relative: bool = False

    @property
    def label(self) -> str:
        """What the values are, for tables: S in nats or S / (L0 − L*)."""
        return "S/(L0−L*)" if self.relative else "S"


def lr_sensitivity_by_size(sizes: ArrayLike, lrs: ArrayLike, losses: ArrayLike, initial_loss: ArrayLike, *,
                           size_name: str = "width", relative: bool = False) -> SensitivityResult:
    """lr_sensitivity for each (size, seed) of losses [size, lr, seed]; initial_loss scalar or [size, seed]."""
    sizes, lrs, losses = _sweep(sizes, lrs, losses, name=size_name + "s")
    n_z, _, n_s = losses.shape
    init = _initial_losses(initial_loss, (n_z, n_s))
    values = np.array([[lr_sensitivity(lrs, losses[z, :, s], init[z, s], relative=relative) for s in range(n_s)]
                       for z in range(n_z)])
    mean = values.mean(axis=1)
    growth = None
    if n_z > 1:
        growth = float(np.polyfit(np.log2(sizes), mean, 1)[0])
    return SensitivityResult(sizes=frozen(sizes), size_name=size_name, values=frozen(values), mean=frozen(mean),
                             growth_per_doubling=growth, relative=relative)


@dataclass(frozen=True, eq=False)
class CoordCheckResult(Result):
    """Slopes of log activation size on log width, per layer and step (μP: all near 0).

    A (layer, step) cell whose size is exactly 0 at some width has no log-log slope: its slope is NaN and it is
    listed in ``zero_cells``. A zero-initialised readout or query projection (Tensor Programs V) is exactly 0
    until its first update; a layer 0 in every cell (``dead_layers``) never moved at all."""

    widths: np.ndarray
    layers: tuple[str, ...]
    slopes: np.ndarray  # [layer, step]; NaN in the cells of zero_cells
    sizes: np.ndarray  # [layer, step, width]
    steps: tuple[int, ...] = ()  # the training step of each step column
    zero_cells: tuple[tuple[str, int], ...] = ()  # (layer, step) of each cell exactly 0 at some width

    @property
    def measured(self) -> np.ndarray:
        """[layer, step]: True where the slope exists (no width's size is exactly 0)."""
        return ~np.isnan(self.slopes)

    @property
    def dead_layers(self) -> tuple[str, ...]:
        """Layers exactly 0 at every step (at one width or more): nothing about them can be measured."""
        return tuple(name for name, row in zip(self.layers, self.measured) if not row.any())

    @property
    def max_slope(self) -> float:
        """The largest slope over the measured cells (growth); NaN when no cell is measured."""
        return float(np.max(self.slopes[self.measured])) if self.measured.any() else math.nan

    @property
    def max_abs_slope(self) -> float:
        """The largest |slope| over the measured cells; NaN when no cell is measured."""
        return float(np.max(np.abs(self.slopes[self.measured]))) if self.measured.any() else math.nan


#: Resolution of the curve-shift search, and the spacing its curves are compared at, in log2 LR.
SHIFT_RESOLUTION = 0.01
_FINE_STEP = 0.05


def curve_shift(lrs: ArrayLike, base: ArrayLike, curve: ArrayLike) -> float:
    """The shift d in log2 LR that lays ``curve`` on ``base``: curve(x) ≈ c·base(x − d), so curve's optimal LR is 2^d
    times base's. Both log-loss curves are interpolated (PCHIP: no overshoot at a diverged edge) and compared by least
    squares, up to the constant factor c, where they overlap (at least half the grid); d is searched over ± half the
    grid's span. Unlike the vertex of three points it uses both flanks, so a flat top does not make it noisy, and a
    curve that is better everywhere (c < 1) is not read as moved."""
    from scipy.interpolate import PchipInterpolator

    x = np.log2(check.lr_grid(lrs))
    base, curve = (np.log(check.vector(name, v, positive=True)) for name, v in (("base", base), ("curve", curve)))
    check.same_length(lrs=x, base=base, curve=curve)
    base_at, curve_at = PchipInterpolator(x, base), PchipInterpolator(x, curve)
    fine = np.arange(x[0], x[-1] + _FINE_STEP / 2, _FINE_STEP)
    half_span = (x[-1] - x[0]) / 2
    best_err, best_d = np.inf, 0.0
    for d in np.arange(-half_span, half_span + SHIFT_RESOLUTION / 2, SHIFT_RESOLUTION):
        inside = fine[(fine - d >= x[0]) & (fine - d <= x[-1])]
        if 2 * (inside[-1] - inside[0] if inside.size else 0) < x[-1] - x[0]:
            continue
        err = np.var(curve_at(inside) - base_at(inside - d))  # the best log c is the mean residual
        if err < best_err:
            best_err, best_d = err, float(d)
    return round(best_d, 6) + 0.0  # no -0.0


@dataclass(frozen=True, eq=False)
class CurveShiftResult(Result):
    """How the whole loss-vs-LR curve moves with size: per (size, seed) its shift in log2 LR from the first size's
    curve of the same seed, and the least-squares slope of the seed-mean shift on log2 size (0 = transfer)."""

    sizes: np.ndarray
    lrs: np.ndarray
    shift: np.ndarray  # [size, seed]; 0 at the first size
    mean_shift: np.ndarray  # [size]
    slope: float

    @property
    def seed_slopes(self) -> np.ndarray:
        """The slope of each seed's own shift on log2 size, [seed]."""
        return log2_slopes(self.sizes, self.shift)


def lr_curve_shift(sizes: ArrayLike, lrs: ArrayLike, losses: ArrayLike, *,
                   initial_loss: ArrayLike | None = None) -> CurveShiftResult:
    """``curve_shift`` of each size's loss-vs-LR curve from the first size's, per seed, from losses [size, lr, seed];
    diverged runs count as the initial loss (or the grid's worst finite loss)."""
    sizes, lrs, losses = _sweep(sizes, lrs, losses, name="sizes", min_sizes=2)
    n_sizes, _, n_seeds = losses.shape
    init = None if initial_loss is None else _initial_losses(initial_loss, (n_sizes, n_seeds))
    curves = np.stack([np.stack([_diverged_as_initial(losses[i, :, s], None if init is None else init[i, s])
                                 for s in range(n_seeds)], axis=-1) for i in range(n_sizes)])
    if not np.all(np.isfinite(curves)):
        raise ValueError("a size and seed has no finite loss and no initial loss was given")
    shift = np.array([[curve_shift(lrs, curves[0, :, s], curves[i, :, s]) for s in range(n_seeds)]
                      for i in range(n_sizes)])
    mean_shift = shift.mean(axis=1)
    log_sizes = np.log2(sizes) - np.log2(sizes).mean()
    slope = float(log_sizes @ (mean_shift - mean_shift.mean()) / (log_sizes @ log_sizes))
    return CurveShiftResult(sizes=frozen(sizes), lrs=frozen(lrs), shift=frozen(shift), mean_shift=frozen(mean_shift),
                            slope=slope)


def seed_geometric_mean(sizes: Sequence[ArrayLike]) -> np.ndarray:
    """Activation sizes averaged over seeds (the first axis) geometrically: the log-log slope of the mean is the
    mean of the seeds' slopes, so one noisy seed cannot dominate. A size of exactly 0 in any seed gives 0 (the
    geometric mean's value), which ``coord_slopes`` reports as a zero cell."""
    with np.errstate(divide="ignore"):
        return np.exp(np.mean(np.log(np.asarray(sizes, dtype=float)), axis=0))


def coord_slopes(widths: ArrayLike, sizes: ArrayLike, layers: Sequence[str] | None = None,
                 steps: Sequence[int] | None = None) -> CoordCheckResult:
    """Least-squares slope of log size against log width for each (layer, step) of sizes [layer, step, width].

    ``steps`` labels the step columns (default 0, 1, ...). A cell with a size of exactly 0 at any width gets slope
    NaN and is listed in the result's ``zero_cells`` (a zero-initialised layer before its first update)."""
    widths = check.increasing("widths", widths)
    sizes = np.asarray(sizes, dtype=float)
    if sizes.ndim != 3 or sizes.shape[2] != widths.size:
        raise ValueError(f"sizes must have shape [layer, step, width={widths.size}], got {sizes.shape}")
    if not np.all(np.isfinite(sizes) & (sizes >= 0)):
        raise ValueError("activation sizes must be finite and non-negative")
    names = tuple(layers) if layers is not None else tuple(f"layer{i}" for i in range(sizes.shape[0]))
    if len(names) != sizes.shape[0]:
        raise ValueError(f"got {len(names)} layer names for {sizes.shape[0]} layers")
    step_labels = tuple(int(t) for t in steps) if steps is not None else tuple(range(sizes.shape[1]))
    if len(step_labels) != sizes.shape[1]:
        raise ValueError(f"got {len(step_labels)} step labels for {sizes.shape[1]} steps")
    zero = np.any(sizes == 0, axis=2)  # [layer, step]
    log_w = np.log(widths) - np.log(widths).mean()
    log_s = np.log(np.where(sizes > 0, sizes, 1.0))
    slopes = np.where(zero, np.nan, (log_s - log_s.mean(axis=2, keepdims=True)) @ log_w / (log_w @ log_w))
    return CoordCheckResult(widths=frozen(widths), layers=names, slopes=frozen(slopes), sizes=frozen(sizes),
                            steps=step_labels,
                            zero_cells=tuple((names[i], step_labels[j]) for i, j in zip(*np.nonzero(zero))))


@dataclass(frozen=True, eq=False)
class CoordVerdict(Result):
    """One verdict of the coordinate check over some of its steps: the worst excess slope over its cells (growth, or
    |slope| in a two-sided row), measured on the seeds' geometric-mean sizes and on each seed alone.

    ``status`` is "fail" when the value is past ``bound`` by more than ``sigmas`` standard errors of the seed values,
    "pass" when it is below by as much, and "unresolved" between: within noise of the bound (a verdict there would be a
    coin flip; the check adds seeds, then calls it inconclusive)."""

    name: str
    steps: tuple[int, ...]
    value: float
    seed_values: tuple[float, ...]
    bound: float
    worst: tuple[str, int] | None  # (layer, step) of the worst cell; None when no cell is measured
    sigmas: float = 2.0

    @property
    def noise(self) -> float:
        """Standard error of the value from the seeds' spread (0 with one seed: no spread to estimate)."""
        values = np.asarray(self.seed_values, dtype=float)
        values = values[np.isfinite(values)]
        return float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else 0.0

    @property
    def status(self) -> str:
        if not math.isfinite(self.value) or abs(self.value - self.bound) > self.sigmas * self.noise:
            return "fail" if self.value > self.bound else "pass"
        return "unresolved"


def coord_excess(result: CoordCheckResult, steps: Sequence[int], expected_at_init: Sequence[float | None],
                 sustained: bool = False) -> tuple[float, tuple[str, int] | None]:
    """The worst excess slope over the measured cells of ``steps``: the slope (growth) in every cell; at step 0, in a
    row whose slope at init μP predicts (``expected_at_init`` not None: 0 for a layer kept Θ(1), −½ per doubling of
    the head size for attention logits of independent q and k), the distance from that prediction either way; with
    its (layer, step). ``sustained``: a row counts with its smallest excess over the steps (growth that persists; the
    step reported is the last). -inf and None when no cell is measured."""
    columns = [result.steps.index(t) for t in steps]
    slopes = result.slopes[:, columns]
    predicted = np.array([np.nan if e is None else e for e in expected_at_init], dtype=float)[:, None]
    at_init = ~np.isnan(predicted) & (np.asarray(steps) == 0)[None, :]
    excess = np.where(at_init, np.abs(slopes - np.nan_to_num(predicted)), slopes)
    labels = list(steps)
    if sustained:  # a row grows by the least it grew at any of the steps: a swing at one step does not count
        excess, labels = excess.min(axis=1, keepdims=True), labels[-1:]  # NaN (a zero cell) leaves the row out
    excess = np.where(np.isnan(excess), -np.inf, excess)
    if not np.isfinite(excess).any():
        return -math.inf, None
    row, column = np.unravel_index(np.argmax(excess), excess.shape)
    return float(excess[row, column]), (result.layers[row], labels[column])


def depth_coord_excess(result: CoordCheckResult) -> tuple[float, tuple[str, int] | None]:
    """The depth coordinate check's value: ``coord_excess`` over every step with the residual stream expected flat in
    depth at init (either way) and growth counted after it; with its (row, step)."""
    return coord_excess(result, result.steps, [0.0] * len(result.layers))


def coord_verdict(name: str, widths: ArrayLike, per_seed_sizes: Sequence[ArrayLike], layers: Sequence[str],
                  all_steps: Sequence[int], steps: Sequence[int], expected_at_init: Sequence[float | None], bound: float,
                  sigmas: float = 2.0, sustained: bool = False) -> CoordVerdict:
    """The verdict over ``steps`` of a coordinate check whose sizes are [layer, step, width] per seed (``all_steps``
    label their step axis); see ``CoordVerdict`` and ``coord_excess``."""
    mean = coord_slopes(widths, seed_geometric_mean(per_seed_sizes), layers=layers, steps=all_steps)
    value, worst = coord_excess(mean, steps, expected_at_init, sustained)
    seed_values = tuple(coord_excess(coord_slopes(widths, sizes, layers=layers, steps=all_steps), steps,
                                     expected_at_init, sustained)[0] for sizes in per_seed_sizes)
    return CoordVerdict(name=name, steps=tuple(steps), value=value, seed_values=seed_values, bound=bound, worst=worst,
                        sigmas=sigmas)


@dataclass(frozen=True, eq=False)
class LogitTrend(Result):
    """Growth of a logit-size series (max attention logit, |log Z|) over training."""

    steps: np.ndarray
    values: np.ndarray
    final: float
    max_abs: float
    mid: float  # value at the start of the second half
    rise: float  # least-squares rise over the second half (slope × its length in steps); NaN if diverged
    growing: bool  # sustained growth: rise > min_rise and final > growth_factor × mid
    growth: float  # how near sustained growth: min(rise / min_rise, final / (growth_factor × mid)), > 1 iff growing
    diverged: bool  # a non-finite value, or |value| > cap
    drift: float  # max |value| over the second half minus |value| at the first step
    drifted: bool  # drift > max_drift: the series moved away from 0 and stayed there


def logit_trend(steps: ArrayLike, values: ArrayLike, *, min_rise: float = 1.0, growth_factor: float = 1.5,
                cap: float = 1e4, max_drift: float = math.inf) -> LogitTrend:
    """Summarise a per-step series; pass |log Z| for the output normaliser (its drift either way matters).

    Defaults: a rise of more than 1 (nat, or logit unit) over the second half that also ends 1.5×
    above its mid-run value is sustained growth; Wortsman et al. see diverging runs pass 1e3-1e4.
    ``max_drift`` bounds how far |value| over the second half may rise above |value| at the start: for a
    series that training should hold near 0 but that starts away from it (log Z starts near log(vocab)).
    """
    steps = check.increasing("steps", steps, min_len=4, positive=False)
    values = check.vector("values", values, finite=False)
    check.same_length(steps=steps, values=values)
    half = len(steps) // 2
    finite = np.all(np.isfinite(values))
    diverged = not finite or bool(np.max(np.abs(values)) > cap)
    rise, growth = float("nan"), math.inf
    if finite:
        x, v = steps[half:], values[half:]
        rise = float(np.polyfit(x, v, 1)[0] * (x[-1] - x[0]))
        floor = growth_factor * max(values[half], 0.0)
        final_over_floor = values[-1] / floor if floor > 0 else (math.inf if values[-1] > 0 else 0.0)
        growth = min(rise / min_rise, float(final_over_floor))
    growing = bool(finite and growth > 1)
    drift = float(np.max(np.abs(values[half:])) - abs(values[0])) if finite else math.inf
    return LogitTrend(
        steps=frozen(steps), values=frozen(values), final=float(values[-1]),
        max_abs=float(np.max(np.abs(values))) if finite else float("inf"), mid=float(values[half]),
        rise=rise, growing=bool(growing), growth=growth, diverged=diverged, drift=drift, drifted=drift > max_drift,
    )


@dataclass(frozen=True, eq=False)
class WidthTrend(Result):
    """Loss against width at one fixed LR ("wider is better": it should not rise)."""

    widths: np.ndarray
    mean_loss: np.ndarray  # [width], over seeds; +inf where a run diverged
    slope_per_doubling: float  # least-squares slope of loss on log2 width; NaN if any diverged
    max_increase: float  # max over narrower i < wider j of loss[j] − loss[i] (0 if never rising)
    max_rel_increase: float  # the same, relative to loss[i]
    worst_pair: tuple[int, int] | None  # (i, j) of the largest relative rise


def fixed_lr_width_trend(widths: ArrayLike, losses: ArrayLike) -> WidthTrend:
    """Loss at one fixed LR per width, losses [width] or [width, seed]; non-finite runs count as +inf."""
    widths = check.increasing("widths", widths)
    losses = np.asarray(losses, dtype=float)
    if losses.ndim not in (1, 2) or losses.shape[0] != widths.size:
        raise ValueError(f"losses must have shape [width={widths.size}] or [width, seed], got {losses.shape}")
    per_run = np.where(np.isfinite(losses), losses, np.inf)
    mean = per_run.mean(axis=1) if per_run.ndim == 2 else per_run
    with np.errstate(invalid="ignore", divide="ignore"):
        rise = np.nan_to_num(mean[None, :] - mean[:, None], nan=0.0, posinf=np.inf)  # [i, j]: loss[j] − loss[i]
        rel = rise / np.abs(mean[:, None])
    later = np.triu(np.ones_like(rise, dtype=bool), k=1)
    rel = np.where(later & ~np.isnan(rel), rel, -np.inf)
    i, j = np.unravel_index(np.argmax(rel), rel.shape)
    rising = bool(rel[i, j] > 0)
    slope = float(np.polyfit(np.log2(widths), mean, 1)[0]) if np.all(np.isfinite(mean)) else float("nan")
    return WidthTrend(
        widths=frozen(widths), mean_loss=frozen(mean), slope_per_doubling=slope,
        max_increase=float(np.max(np.where(later, rise, 0.0), initial=0.0)),
        max_rel_increase=float(rel[i, j]) if rising else 0.0, worst_pair=(int(i), int(j)) if rising else None,
    )


@dataclass(frozen=True, eq=False)
class EpsilonResult(Result):
    """Adam's ε against the gradients it divides (Everett et al.), per layer, width and LR, late in training.

    ``sqrt_v_rms`` is the smallest RMS of √v̂ (Adam's denominator before ε) and ``frac_below_eps`` the largest fraction of coordinates
    with √v̂ < ε seen over the seeds and probe steps asserted (NaN where no run was probed). Gradient
    RMS falls with width, so the largest width is the one asserted; ``rms_slope`` is the least-squares
    slope of log2 RMS of √v̂ (smallest over LRs) on log2 width per layer: how fast ε's headroom shrinks.
    """

    layers: tuple[str, ...]
    widths: np.ndarray
    lrs: np.ndarray
    eps: np.ndarray  # [layer]
    sqrt_v_rms: np.ndarray  # [layer, width, lr]
    frac_below_eps: np.ndarray  # [layer, width, lr]
    rms_slope: np.ndarray  # [layer]

    @property
    def rms_ratio(self) -> np.ndarray:
        """Gradient RMS in units of ε, [layer, width, lr]."""
        return self.sqrt_v_rms / self.eps[:, None, None]


def epsilon_margins(layers: Sequence[str], widths: ArrayLike, lrs: ArrayLike, eps: ArrayLike, sqrt_v_rms: ArrayLike,
                    frac_below_eps: ArrayLike) -> EpsilonResult:
    """Bundle the Adam-ε probe ([layer, width, lr] arrays, ``eps`` per layer) and fit each layer's gradient-RMS slope on width."""
    widths = check.increasing("widths", widths)
    lrs = check.increasing("lrs", lrs, min_len=1)
    names = tuple(layers)
    eps = check.vector("eps", eps, positive=True)
    shape = (len(names), widths.size, lrs.size)
    sqrt_v_rms = check.shaped("sqrt_v_rms", sqrt_v_rms, shape, finite=False)
    frac = check.shaped("frac_below_eps", frac_below_eps, shape, finite=False)
    if eps.size != len(names):
        raise ValueError(f"got {eps.size} eps values for {len(names)} layers")
    smallest = np.fmin.reduce(sqrt_v_rms, axis=2)  # NaN only where every LR is
    fittable = np.all(np.isfinite(smallest) & (smallest > 0), axis=1)
    slopes = np.full(len(names), np.nan)
    if fittable.any():
        slopes[fittable] = np.polyfit(np.log2(widths), np.log2(smallest[fittable]).T, 1)[0]
    return EpsilonResult(layers=names, widths=frozen(widths), lrs=frozen(lrs), eps=frozen(eps), sqrt_v_rms=frozen(sqrt_v_rms),
                         frac_below_eps=frozen(frac), rms_slope=frozen(slopes))
