"""Scaling-law fits: L = E + A·x^-α and Chinchilla's L(N, D) = E + A/N^α + B/D^β.

Both are fitted in log space, log L̂ = logsumexp(a − α·log x, [b − β·log D,] e) with A = e^a, E = e^e
(so E ≥ 0 by construction), under a Huber loss (δ = 1e-3) *summed* over points, minimised by
L-BFGS-B with analytic gradients from a grid of starts; CIs come from bootstrapping the points.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize

from . import _validate as check
from ._result import Result, frozen

HUBER_DELTA = 1e-3

# scipy's L-BFGS-B stops when an iteration lowers f by less than ftol·max(|f|, 1): an *absolute*
# 2.2e-9 for our objectives (f ~ 1e-3). A bootstrap refit warm-started at the point fit begins
# within that of its optimum and would return the start unchanged (CIs collapse to ~0), so the
# tolerances are tightened; gtol likewise sits below one point's Huber gradient (δ·|log x|).
LBFGS_OPTIONS: Mapping[str, float] = {"ftol": 1e-12, "gtol": 1e-9}

Reduction = Literal["sum", "mean"]

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # optional dependency: without it fits still work, only slower on a busy machine
    threadpool_limits = None


@contextlib.contextmanager
def _one_blas_thread() -> Iterator[None]:
    """Run L-BFGS-B with a single BLAS thread.

    scipy's L-BFGS-B (C since scipy 1.15) solves its tiny triangular systems with LAPACK dtrtrs,
    which OpenBLAS hands to its thread pool whatever the size: on a busy 2-core machine that
    measured 3.5 ms per iteration instead of 0.1 ms (scipy issue #22438).
    """
    if threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


class _LogSpaceHuber:
    """Huber loss of log L̂ = logsumexp_k(c_k − p_k·log x_k [, e]) against log L, batched over parameter rows.

    Parameter layout: [c_1..c_K, p_1..p_K, (e)]. Evaluating many rows at once lets the multi-start
    screen score the whole start grid in one vectorised call.
    """

    def __init__(self, log_x: np.ndarray, log_y: np.ndarray, *, fit_E: bool, reduction: Reduction = "sum"):
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")
        self.log_x = log_x  # [K, n]
        self.log_y = log_y  # [n]
        self.k = log_x.shape[0]
        self.fit_E = fit_E
        self.reduction = reduction
        self.n_params = 2 * self.k + int(fit_E)

    def _terms(self, theta: np.ndarray) -> np.ndarray:
        """The logsumexp terms, shape [S, K(+1), n]."""
        z = np.empty((theta.shape[0], self.k + int(self.fit_E), self.log_y.size))
        z[:, : self.k] = theta[:, : self.k, None] - theta[:, self.k : 2 * self.k, None] * self.log_x
        if self.fit_E:
            z[:, self.k] = theta[:, 2 * self.k, None]
        return z

    def log_predict(self, theta: np.ndarray) -> np.ndarray:
        """log L̂ for each parameter row, shape [S, n]."""
        return np.logaddexp.reduce(self._terms(theta), axis=1)

    def loss_and_grad(self, theta: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Objective [S] and its gradient [S, P]; weights are per-point multiplicities (bootstrap)."""
        w = np.ones_like(self.log_y) if weights is None else weights
        if self.reduction == "mean":
            w = w / w.sum()
        z = self._terms(theta)
        log_pred = np.logaddexp.reduce(z, axis=1)
        r = log_pred - self.log_y
        clipped = np.clip(r, -HUBER_DELTA, HUBER_DELTA)  # Huber'(r)
        loss = (clipped * (r - 0.5 * clipped) * w).sum(-1)  # Huber(r): r²/2 inside ±δ, δ(|r| − δ/2) outside
        # d loss / d term_k = Huber'(r)·w·softmax_k(terms)
        weighted = (clipped * w)[:, None, :] * np.exp(z - log_pred[:, None, :])
        grad = np.empty_like(theta)
        grad[:, : self.k] = weighted[:, : self.k].sum(-1)
        grad[:, self.k : 2 * self.k] = -np.einsum("skn,kn->sk", weighted[:, : self.k], self.log_x)
        if self.fit_E:
            grad[:, 2 * self.k] = weighted[:, self.k].sum(-1)
        return loss, grad

    def lbfgs(self, start: np.ndarray, weights: np.ndarray | None = None,
                 options: Mapping[str, float] = LBFGS_OPTIONS) -> tuple[np.ndarray, float]:
        """One L-BFGS-B run with the analytic gradient."""
        def fun(t: np.ndarray) -> tuple[float, np.ndarray]:
            f, g = self.loss_and_grad(t[None], weights)
            return float(f[0]), g[0]

        res = minimize(fun, start, jac=True, method="L-BFGS-B", options=dict(options))
        return res.x, float(res.fun)

    def multistart(self, starts: np.ndarray, groups: np.ndarray,
                   options: Mapping[str, float] = LBFGS_OPTIONS) -> tuple[np.ndarray, float]:
        """Screen every start in one vectorised call, then polish the best start of each group; keep the best.

        Groups are the cells of the exponent grid (α, or α × β). The loss surface is non-convex
        through the exponents, while the levels (a, b, e) mostly shift it, so the cheapest start
        per exponent cell stands for that cell. On the Chinchilla data 19 of the 25 polished cells
        reach the optimum that L-BFGS from all 4,500 starts finds (benchmarks/bench_fit.py checks
        it), at 1/180 of the optimiser runs.
        """
        f0, _ = self.loss_and_grad(starts)
        f0 = np.where(np.isfinite(f0), f0, np.inf)
        order = np.lexsort((f0, groups))
        first_of_group = np.r_[True, groups[order][1:] != groups[order][:-1]]
        with _one_blas_thread():
            fits = [self.lbfgs(starts[i], options=options) for i in order[first_of_group]]
        return min(fits, key=lambda fit: fit[1])

    def bootstrap(self, theta_hat: np.ndarray, n_boot: int, seed: int,
                  options: Mapping[str, float] = LBFGS_OPTIONS) -> np.ndarray:
        """Refit on n_boot resamples of the points (with replacement), warm-started at the point fit; [B, P]."""
        rng = np.random.default_rng(seed)
        n = self.log_y.size
        out = np.empty((n_boot, self.n_params))
        with _one_blas_thread():
            for b in range(n_boot):
                counts = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)
                out[b] = self.lbfgs(theta_hat, counts, options)[0]
        return out

    def r2_and_residuals(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """R² in log space and residuals log L − log L̂."""
        residuals = self.log_y - self.log_predict(theta[None])[0]
        ss_tot = float(np.sum((self.log_y - self.log_y.mean()) ** 2))
        r2 = 1.0 - float(np.sum(residuals**2)) / ss_tot if ss_tot > 0 else float("nan")
        return r2, residuals


def _percentile_interval(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central percentile interval of bootstrap samples along their first axis."""
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(samples, [q, 100 - q], axis=0)
    return lo, hi


def _fit(objective: _LogSpaceHuber, starts: np.ndarray, groups: np.ndarray, bootstrap: int, seed: int,
         natural: Callable[[np.ndarray], np.ndarray], names: tuple[str, ...],
         options: Mapping[str, float] = LBFGS_OPTIONS) -> tuple[np.ndarray, dict]:
    """Multi-start point fit, then the bootstrap: natural parameters and the fields shared by the fit results."""
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be >= 0, got {bootstrap}")
    theta, f = objective.multistart(starts, groups, options)
    r2, residuals = objective.r2_and_residuals(theta)
    samples = natural(objective.bootstrap(theta, bootstrap, seed, options))
    ci = {}
    if bootstrap:
        lo, hi = _percentile_interval(samples, 0.95)
        ci = {name: (float(lo[i]), float(hi[i])) for i, name in enumerate(names)}
    shared = {"r2": r2, "residuals": frozen(residuals), "objective": f, "ci": ci, "bootstrap_params": frozen(samples)}
    return natural(theta[None])[0], shared


@dataclass(frozen=True, eq=False)
class PowerLawFit(Result):
    """L(x) = E + A·x^-α (E = 0 when fitted without it); R² and residuals in log space."""

    E: float
    A: float
    alpha: float
    fit_E: bool
    r2: float
    residuals: np.ndarray
    x: np.ndarray
    y: np.ndarray
    n: int
    objective: float
    ci: dict[str, tuple[float, float]]
    bootstrap_params: np.ndarray  # [B, 3] columns (E, A, alpha); empty without bootstrap

    PARAMS: ClassVar[tuple[str, ...]] = ("E", "A", "alpha")

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Fitted loss at x."""
        x = np.asarray(x, dtype=float)
        return self.E + self.A * x ** (-self.alpha)

    def bootstrap_predictions(self, x: ArrayLike) -> np.ndarray:
        """The bootstrap curves at x, shape [B, len(x)] (parameter uncertainty, not noise)."""
        if len(self.bootstrap_params) == 0:
            raise ValueError("this fit has no bootstrap samples: fit with bootstrap=B > 0")
        x = np.asarray(x, dtype=float).reshape(1, -1)
        E, A, alpha = (self.bootstrap_params[:, i, None] for i in range(3))
        return E + A * x ** (-alpha)

    def predict_band(self, x: ArrayLike, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
        """Pointwise percentile band of the bootstrap curves at x (parameter uncertainty, not noise)."""
        x = np.asarray(x, dtype=float)
        lo, hi = _percentile_interval(self.bootstrap_predictions(x), level)
        return lo.reshape(x.shape), hi.reshape(x.shape)


_POWER_ALPHAS = (0.05, 0.1, 0.2, 0.4, 0.7, 1.0, 1.5, 2.0)
_POWER_E_FRACTIONS = (1e-3, 0.25, 0.5, 0.75, 0.9, 0.97)


def _power_law_starts(log_x: np.ndarray, y: np.ndarray, fit_E: bool) -> tuple[np.ndarray, np.ndarray]:
    """Start grid set from the data, since x and L come in any units.

    α over a fixed grid (one group each), E as fractions of min L, a matching the median point.
    """
    rows, groups = [], []
    for g, alpha in enumerate(_POWER_ALPHAS):
        for frac in _POWER_E_FRACTIONS if fit_E else (0.0,):
            E = frac * y.min()
            a = float(np.median(np.log(y - E) + alpha * log_x))
            rows.append([a, alpha, np.log(E)] if fit_E else [a, alpha])
            groups.append(g)
    return np.array(rows), np.array(groups)


def fit_power_law(x: ArrayLike, y: ArrayLike, *, fit_E: bool = True, bootstrap: int = 0, seed: int = 0) -> PowerLawFit:
    """Fit L = E + A·x^-α (or log L = log A − α·log x with fit_E=False); bootstrap=B adds 95% CIs and a prediction band."""
    x = check.vector("x", x, positive=True)
    y = check.vector("y", y, positive=True)
    check.same_length(x=x, y=y)
    objective = _LogSpaceHuber(np.log(x)[None], np.log(y), fit_E=fit_E)
    check.enough_points(len(np.unique(x)), objective.n_params, "the power law")

    def natural(theta: np.ndarray) -> np.ndarray:
        """[a, α, (e)] rows → [E, A, α] rows."""
        E = np.exp(theta[:, 2]) if fit_E else np.zeros(len(theta))
        return np.column_stack([E, np.exp(theta[:, 0]), theta[:, 1]])

    (E, A, alpha), shared = _fit(objective, *_power_law_starts(np.log(x), y, fit_E), bootstrap, seed, natural,
                                 PowerLawFit.PARAMS)
    return PowerLawFit(E=float(E), A=float(A), alpha=float(alpha), fit_E=fit_E, x=frozen(x), y=frozen(y),
                       n=int(x.size), **shared)


@dataclass(frozen=True, eq=False)
class ChinchillaFit(Result):
    """L(N, D) = E + A/N^α + B/D^β (Hoffmann et al. 2022, approach 3); R² and residuals in log space."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    r2: float
    residuals: np.ndarray
    n: int
    objective: float
    ci: dict[str, tuple[float, float]]
    bootstrap_params: np.ndarray  # [B, 5] columns (E, A, B, alpha, beta); empty without bootstrap

    PARAMS: ClassVar[tuple[str, ...]] = ("E", "A", "B", "alpha", "beta")

    def predict(self, N: ArrayLike, D: ArrayLike) -> np.ndarray:
        """Fitted loss for N parameters trained on D tokens."""
        N, D = np.asarray(N, dtype=float), np.asarray(D, dtype=float)
        return self.E + self.A * N ** (-self.alpha) + self.B * D ** (-self.beta)

    def compute_optimal(self, C: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Loss-minimising (N*, D*) at compute C = 6ND: N* = G·(C/6)^(β/(α+β)), G = (αA/(βB))^(1/(α+β))."""
        C = np.asarray(C, dtype=float)
        if not np.all(np.isfinite(C) & (C > 0)):
            raise ValueError("compute C must be finite and positive")
        if self.alpha <= 0 or self.beta <= 0:
            raise ValueError(f"no compute optimum with non-positive exponents (α={self.alpha:.4g}, β={self.beta:.4g})")
        s = self.alpha + self.beta
        G = (self.alpha * self.A / (self.beta * self.B)) ** (1 / s)
        N_opt = G * (C / 6) ** (self.beta / s)
        return N_opt, C / (6 * N_opt)


def _chinchilla_starts() -> tuple[np.ndarray, np.ndarray]:
    """Hoffmann et al.'s start grid, grouped by (α, β).

    a, b ∈ {0, 5, …, 25}, α, β ∈ {0, 0.5, …, 2}, e ∈ {−1, −0.5, …, 1}: 6·6·5·5·5 = 4,500 starts.
    """
    levels, exponents, es = np.arange(0, 30, 5.0), np.arange(0, 2.5, 0.5), np.arange(-1, 1.5, 0.5)
    grid = np.array(list(itertools.product(levels, levels, exponents, exponents, es)))
    groups = np.unique(grid[:, 2:4], axis=0, return_inverse=True)[1].ravel()
    return grid, groups


def fit_chinchilla(N: ArrayLike, D: ArrayLike, L: ArrayLike, *, bootstrap: int = 0, seed: int = 0,
                   reduction: Reduction = "sum", lbfgs_options: Mapping[str, float] = LBFGS_OPTIONS) -> ChinchillaFit:
    """Fit L(N, D) = E + A/N^α + B/D^β; bootstrap=B adds 95% CIs.

    reduction="mean" and lbfgs_options={} (scipy's defaults) exist to reproduce the early stop of
    the original Chinchilla fit; the defaults are the ones to use.
    """
    N = check.vector("N", N, positive=True)
    D = check.vector("D", D, positive=True)
    L = check.vector("L", L, positive=True)
    check.same_length(N=N, D=D, L=L)
    objective = _LogSpaceHuber(np.log(np.stack([N, D])), np.log(L), fit_E=True, reduction=reduction)
    check.enough_points(len(np.unique(np.stack([N, D]), axis=1).T), objective.n_params, "the Chinchilla law")
    (E, A, B, alpha, beta), shared = _fit(objective, *_chinchilla_starts(), bootstrap, seed, _chinchilla_natural,
                                          ChinchillaFit.PARAMS, lbfgs_options)
    return ChinchillaFit(E=float(E), A=float(A), B=float(B), alpha=float(alpha), beta=float(beta), n=int(N.size),
                         **shared)


def _chinchilla_natural(theta: np.ndarray) -> np.ndarray:
    """[a, b, α, β, e] rows → [E, A, B, α, β] rows."""
    return np.column_stack([np.exp(theta[:, 4]), np.exp(theta[:, 0]), np.exp(theta[:, 1]), theta[:, 2], theta[:, 3]])


@dataclass(frozen=True, eq=False)
class ExtrapolationResult(Result):
    """A power law fitted without the largest sizes, judged on how well it predicts them."""

    fit: PowerLawFit
    x_holdout: np.ndarray
    y_holdout: np.ndarray
    predicted: np.ndarray
    rel_errors: np.ndarray  # (predicted − observed) / observed
    max_rel_error: float
    band_lo: np.ndarray | None  # bootstrap prediction band at the held-out x (None without bootstrap)
    band_hi: np.ndarray | None
    in_band: np.ndarray | None
    observed_noise: np.ndarray | None  # the held-out observation's own seed noise
    seed_noise: np.ndarray | None  # noise at the held-out x: seed noise combined with the bootstrap prediction spread
    z_scores: np.ndarray | None  # (predicted − observed) / seed_noise, signed like rel_errors
    flagged: np.ndarray | None  # |z| > n_sigma
    n_sigma: float

    def excess(self, rtol: float) -> np.ndarray:
        """Per held-out point, how far past its bounds the prediction is: |relative error| / rtol, or, where the seed
        noise is known, the smaller of that and |miss| / (n_sigma · the observation's seed noise). Above 1, the point
        misses by more than the tolerance *and* by more than the observation's noise explains: a miss within the seed
        noise of the observation is not the law's, but the fit's own spread excuses nothing (a law too uncertain to
        predict the size has not extrapolated to it)."""
        rel = np.abs(self.rel_errors) / rtol
        if self.observed_noise is None:
            return rel
        return np.minimum(rel, np.abs(self.predicted - self.y_holdout) / (self.n_sigma * self.observed_noise))


def extrapolation_check(x: ArrayLike, y: ArrayLike, holdout: int = 1, *, bootstrap: int = 200, seed: int = 0,
                        fit_E: bool = True, seed_noise: ArrayLike | None = None, n_sigma: float = 3.0) -> ExtrapolationResult:
    """Fit on all but the `holdout` largest distinct x, predict those points, and compare.

    seed_noise (per point, aligned with x) is the noise of the observed loss (e.g. the standard error of
    its seed mean). A held-out residual is flagged beyond n_sigma of the combined noise: seed_noise and,
    with bootstrap, the spread of the bootstrap predictions there (a fit on few sizes is itself uncertain).
    """
    x = check.vector("x", x, positive=True)
    y = check.vector("y", y, positive=True)
    check.same_length(x=x, y=y)
    sizes = np.unique(x)
    if not 1 <= holdout < sizes.size:
        raise ValueError(f"holdout must be between 1 and {sizes.size - 1} (distinct sizes minus one), got {holdout}")
    held = x >= sizes[-holdout]
    if seed_noise is not None:
        seed_noise = check.vector("seed_noise", seed_noise, positive=True)
        check.same_length(x=x, seed_noise=seed_noise)
    fit = fit_power_law(x[~held], y[~held], fit_E=fit_E, bootstrap=bootstrap, seed=seed)
    x_out, y_out = x[held], y[held]
    predicted = fit.predict(x_out)
    rel = (predicted - y_out) / y_out
    band_lo = band_hi = in_band = None
    if bootstrap:
        band_lo, band_hi = fit.predict_band(x_out)
        # A noiseless fit has a near zero-width band; the fit itself is only resolved to ~1e-6 in
        # log L (ftol 1e-12 on squared log residuals), so points that close count as inside.
        slack = 1e-6 * y_out
        in_band = frozen((y_out >= band_lo - slack) & (y_out <= band_hi + slack), bool)
        band_lo, band_hi = frozen(band_lo), frozen(band_hi)
    observed = noise = z = flagged = None
    if seed_noise is not None:
        observed = noise = frozen(seed_noise[held])
        if bootstrap:
            noise = np.sqrt(noise**2 + np.var(fit.bootstrap_predictions(x_out), axis=0))
        z = (predicted - y_out) / noise
        flagged = frozen(np.abs(z) > n_sigma, bool)
        noise, z = frozen(noise), frozen(z)
    return ExtrapolationResult(
        fit=fit, x_holdout=frozen(x_out), y_holdout=frozen(y_out), predicted=frozen(predicted),
        rel_errors=frozen(rel), max_rel_error=float(np.max(np.abs(rel))), band_lo=band_lo, band_hi=band_hi,
        in_band=in_band, observed_noise=observed, seed_noise=noise, z_scores=z, flagged=flagged, n_sigma=float(n_sigma),
    )
