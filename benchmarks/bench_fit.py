"""Chinchilla approach-3 fit on the published data: our fit and bootstrap against the naive multi-start.

Naive = what the method description suggests read literally: scipy L-BFGS-B with finite-difference
gradients from every start of the 4,500-point grid, and the same again on every bootstrap resample.
Its point fit is timed on a random subset of starts and extrapolated by the measured time per start;
its bootstrap is extrapolated from that. Also runs our analytic-gradient L-BFGS-B from *all* starts
to check that screening (one polish per exponent cell) finds the same optimum.

    python benchmarks/bench_fit.py [--naive-starts 150] [--skip-exhaustive]

Exits non-zero when our point fit takes over 10 s or our 1,000-resample CIs over 60 s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize
from scipy.special import huber, logsumexp
from tabulate import tabulate

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chinchilla_data import load_chinchilla  # noqa: E402

from pytest_scaling.fit import HUBER_DELTA, LBFGS_OPTIONS, _chinchilla_starts, _LogSpaceHuber, fit_chinchilla  # noqa: E402

POINT_BUDGET_S = 10.0
CI_BUDGET_S = 60.0
N_BOOT = 1000


def one_blas_thread():
    """Same BLAS threading for the naive runs as for ours (see pytest_scaling.fit._one_blas_thread)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def naive_objective(params, log_N, log_D, log_L):
    """The published objective, written plainly: summed Huber of log-space residuals."""
    a, b, alpha, beta, e = params  # the layout of the start grid
    pred = logsumexp([a - alpha * log_N, b - beta * log_D, np.full_like(log_N, e)], axis=0)
    return np.sum(huber(HUBER_DELTA, pred - log_L))


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--naive-starts", type=int, default=150, help="random starts timed for the naive fit")
    parser.add_argument("--skip-exhaustive", action="store_true", help="skip the all-starts screening check")
    args = parser.parse_args()

    N, D, L = load_chinchilla()
    grid, _ = _chinchilla_starts()
    print(f"{len(L)} points, {len(grid)} grid starts, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    fit_chinchilla(N, D, L)  # warm-up (imports, caches)
    point_s, fit = timed(lambda: fit_chinchilla(N, D, L))
    ci_s, boot = timed(lambda: fit_chinchilla(N, D, L, bootstrap=N_BOOT, seed=0))
    print(f"ours: E={fit.E:.4f} A={fit.A:.2f} B={fit.B:.2f} alpha={fit.alpha:.4f} beta={fit.beta:.4f} "
          f"objective={fit.objective:.10g}")
    print("ours 95% CIs: " + ", ".join(f"{k} ({lo:.4g}, {hi:.4g})" for k, (lo, hi) in boot.ci.items()))

    rng = np.random.default_rng(0)
    subset = grid[rng.choice(len(grid), size=args.naive_starts, replace=False)]
    logs = (np.log(N), np.log(D), np.log(L))
    with one_blas_thread():
        naive_s, naive_runs = timed(lambda: [minimize(naive_objective, s, args=logs, method="L-BFGS-B") for s in subset])
    per_start = naive_s / len(subset)
    naive_point = per_start * len(grid)
    best_naive = min(naive_runs, key=lambda r: r.fun)
    print(f"naive: {per_start * 1e3:.1f} ms per start over {len(subset)} random starts; best objective in the "
          f"subset {best_naive.fun:.10g} (alpha={best_naive.x[2]:.4f}, beta={best_naive.x[3]:.4f})")

    rows = [
        ["ours: point fit (screen 4,500 starts, polish 25)", point_s, 1.0],
        [f"naive: point fit, 4,500 starts × FD gradients (extrapolated from {len(subset)})",
         naive_point, naive_point / point_s],
        [f"ours: {N_BOOT}-resample CIs (warm-started)", ci_s, 1.0],
        [f"naive: {N_BOOT} resamples × full multi-start (extrapolated)", naive_point * N_BOOT, naive_point * N_BOOT / ci_s],
    ]
    if not args.skip_exhaustive:
        objective = _LogSpaceHuber(np.log(np.stack([N, D])), np.log(L), fit_E=True)
        with one_blas_thread():
            all_s, all_runs = timed(lambda: [objective.lbfgs(s, options=LBFGS_OPTIONS) for s in grid])
        values = np.array([f for _, f in all_runs])
        theta = all_runs[int(np.argmin(values))][0]
        at_optimum = int(np.sum(values <= values.min() * (1 + 1e-6)))
        print(f"exhaustive (analytic gradients, all {len(grid)} starts): objective {values.min():.10g} "
              f"(alpha={theta[2]:.4f}, beta={theta[3]:.4f}); {at_optimum} starts reach it; "
              f"screened fit is {fit.objective / values.min() - 1:+.2e} relative to it")
        rows.insert(1, [f"ours, unscreened: all {len(grid)} starts, analytic gradients", all_s, all_s / point_s])

    print()
    print(tabulate(rows, headers=["method", "wall s", "ratio to ours"], floatfmt=(None, ".3g", ".3g")))
    failures = []
    if point_s > POINT_BUDGET_S:
        failures.append(f"point fit {point_s:.2f} s > {POINT_BUDGET_S} s")
    if ci_s > CI_BUDGET_S:
        failures.append(f"CIs {ci_s:.2f} s > {CI_BUDGET_S} s")
    for failure in failures:
        print(f"OVER BUDGET: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
