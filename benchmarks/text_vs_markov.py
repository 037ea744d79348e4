"""Power law on text vs on the Markov task: best-LR loss against N for the reference GPT's recipe at the cpu budget.

The reference GPT (μP, qk-layernorm, z-loss, Depth-μP branches, 2 layers, base width 32) on its Markov language and
the same architecture on byte-level text (``tasks.text_files()``: the Python documentation, held-out loss), widths
32-256, 100 Adam steps of batch 32 at each width's best LR of anchor × 2^-3..2^2. Per task it prints each width's
seed-mean loss, the fit's 1 − R² (log space) over all widths, and how the law fitted without the widest predicts it.

    python benchmarks/text_vs_markov.py                    # seeds 0, 1; runs cached in .scaling/text-vs-markov
    python benchmarks/text_vs_markov.py --seeds 0 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from tabulate import tabulate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pytest_scaling import families, tasks  # noqa: E402
from pytest_scaling.properties._size_losses import size_losses, standard_error  # noqa: E402
from pytest_scaling.family import ModelFamily  # noqa: E402
from pytest_scaling.families.reference import BASE_DEPTH, Z_LOSS  # noqa: E402
from pytest_scaling.fit import extrapolation_check, fit_power_law  # noqa: E402
from pytest_scaling.session import ScalingSession  # noqa: E402
from pytest_scaling.tiers import TIERS, PowerLawGrid, RelativeLRs  # noqa: E402

WIDTHS = (32, 48, 64, 96, 128, 192, 256)
GRID = PowerLawGrid(widths=WIDTHS, lrs=RelativeLRs(-3, 2), steps=100, batch_size=32, min_r2=0.98, holdout=1,
                    max_rel_error=0.01)


def on_text(seq_len: int) -> ModelFamily:
    """The reference GPT's recipe on byte-level text."""
    return families.gpt(parametrization="mup", qk_layernorm=True, z_loss=Z_LOSS, zero_readout=True,
                        residual_scale="depth-mup", n_layers=BASE_DEPTH, base_depth=BASE_DEPTH, base_width=32, widths=(),
                        task=tasks.text_files(seq_len=seq_len), name="reference-gpt-text")


def measure(family: ModelFamily, seeds: list[int], cache: Path) -> list[str]:
    session = ScalingSession(tier=TIERS["cpu"], device=torch.device("cpu"), seeds=seeds, cache_dir=cache)
    try:
        points = size_losses(session, family, GRID)
    finally:
        session.close()
    fit = fit_power_law(points.sizes, points.mean)
    held = extrapolation_check(points.sizes, points.mean, holdout=1, bootstrap=200,
                               seed_noise=standard_error(points), n_sigma=GRID.n_sigma)
    return [family.task.name, " ".join(f"{v:.4f}" for v in points.mean), f"{np.mean(points.std):.4f}",
            f"{points.mean[0] - points.mean[-1]:.3f}", f"{1 - fit.r2:.4f}", f"{fit.alpha:.2f}", f"{fit.E:.3f}",
            f"{held.rel_errors[0]:+.2%}", f"{held.excess(GRID.max_rel_error)[0]:.2f}"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=32, help="the text task's context (the Markov task's is 32)")
    parser.add_argument("--cache", type=Path, default=REPO / ".scaling" / "text-vs-markov")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(family, args.seeds, args.cache) for family in (families.reference_gpt(), on_text(args.seq_len))]
    print(f"widths {', '.join(map(str, WIDTHS))}; seeds {args.seeds}; {torch.get_num_threads()} torch threads")
    print(tabulate(rows, ["task", "best-LR loss per width", "seed std", "drop", "1 − R²", "α", "E",
                          "held-out error", "excess"], tablefmt="github", disable_numparse=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
