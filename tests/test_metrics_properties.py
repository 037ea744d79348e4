"""Property tests for optimal_lr and lr_transfer on synthetic loss curves with a known optimum."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_scaling.metrics import lr_transfer, optimal_lr

PROPERTIES = settings(max_examples=50, derandomize=True, deadline=None)

grids = st.fixed_dictionaries({
    "start": st.integers(-20, -6),  # log2 of the smallest LR
    "step": st.sampled_from([0.5, 1.0]),  # octaves between grid points
    "n": st.integers(3, 16),
})


def log2_grid(grid):
    return grid["start"] + grid["step"] * np.arange(grid["n"])


@PROPERTIES
@given(grids, st.floats(0.01, 0.99), st.floats(0.01, 10.0), st.floats(-5.0, 5.0))
def test_vertex_of_a_sampled_parabola_is_exact(grid, where, curvature, floor):
    x = log2_grid(grid)
    # between the midpoints next to the edges, the nearest grid point (the argmin) is interior
    lo, hi = x[0] + grid["step"] / 2, x[-1] - grid["step"] / 2
    vertex = lo + where * (hi - lo)
    opt = optimal_lr(2.0**x, floor + curvature * (x - vertex) ** 2)
    assert not opt.inconclusive
    assert abs(opt.log2_lr - vertex) < 1e-9


@PROPERTIES
@given(grids, st.data())
def test_inconclusive_exactly_when_the_minimum_is_on_an_edge(grid, data):
    x = log2_grid(grid)
    losses = np.array(data.draw(st.lists(st.floats(0.0, 10.0), min_size=grid["n"], max_size=grid["n"])))
    opt = optimal_lr(2.0**x, losses)
    i = int(np.argmin(losses))
    assert opt.argmin == i
    if i in (0, grid["n"] - 1):
        assert opt.inconclusive and opt.lr is None and "widen the LR grid" in opt.reason
    else:
        assert not opt.inconclusive and x[i - 1] <= opt.log2_lr <= x[i + 1]


@PROPERTIES
@given(
    st.integers(2, 6),  # widths
    st.integers(1, 4),  # seeds
    st.floats(-1.5, 1.5),  # true slope s: η* ∝ width^s
    st.floats(-12.0, -6.0),  # log2 η* at the base width
    st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4),  # per-seed curvatures
)
def test_transfer_slope_is_exact_for_eta_proportional_to_width_power(n_widths, n_seeds, s, base, curvatures):
    widths = 64 * 2 ** np.arange(n_widths)
    log2_eta = base + s * np.log2(widths / 64)
    x = np.arange(-25.0, 0.0)  # wide enough to bracket every optimum
    losses = np.stack([
        np.stack([1.0 + 0.1 * k + curvatures[k] * (x - v) ** 2 for k in range(n_seeds)], axis=-1) for v in log2_eta
    ])
    res = lr_transfer(widths, 2.0**x, losses, n_boot=50)
    assert not res.inconclusive
    assert abs(res.slope - s) < 1e-9
    assert abs(res.intercept - (base - 6 * s)) < 1e-8
    if n_seeds > 1:
        assert abs(res.ci[0] - s) < 1e-9 and abs(res.ci[1] - s) < 1e-9


@PROPERTIES
@given(st.integers(1, 4), st.randoms(use_true_random=False), st.data())
def test_transfer_slope_is_invariant_to_permuting_seeds(n_seeds, rnd, data):
    widths = np.array([64, 128, 256])
    x = np.arange(-16.0, -2.0)
    cells = data.draw(st.lists(st.floats(-12.0, -6.0), min_size=3 * n_seeds, max_size=3 * n_seeds))
    vertices = np.array(cells).reshape(3, n_seeds)
    losses = np.stack([np.stack([(x - v) ** 2 for v in row], axis=-1) for row in vertices])
    perm = list(range(n_seeds))
    rnd.shuffle(perm)
    a = lr_transfer(widths, 2.0**x, losses, n_boot=20)
    b = lr_transfer(widths, 2.0**x, losses[..., perm], n_boot=20)
    assert abs(a.slope - b.slope) < 1e-9
    np.testing.assert_allclose(a.mean_log2_lr, b.mean_log2_lr, atol=1e-9)
