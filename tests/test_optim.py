"""AdamW (coupled and independent decay), AdamAtan2 and the epsilon probe."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_scaling.optim import REFERENCE_EPS, AdamAtan2, AdamW, epsilon_probe

BETAS = (0.9, 0.99)


def _mlp(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))


def _groups(model: torch.nn.Module, weight_decay: float, key: str = "weight_decay") -> list[dict]:
    """Weights decayed by ``weight_decay`` (under group key ``key``), biases not."""
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    return [{"params": weights, key: weight_decay}, {"params": biases, key: 0.0}]


def _grads(n_steps: int, shape: tuple[int, ...], scale: float = 1e-2, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [scale * torch.randn(shape, generator=g, dtype=torch.float64) for _ in range(n_steps)]


@pytest.mark.parametrize("our_key, torch_optimizer", [("weight_decay", torch.optim.AdamW), ("l2", torch.optim.Adam)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_adamw_matches_torch(weight_decay: float, our_key: str, torch_optimizer: type) -> None:
    """Coupled decay is torch.optim.AdamW's weight_decay; ``l2`` is torch.optim.Adam's (added to the gradient)."""
    ours, theirs = _mlp(), _mlp()
    opt_ours = AdamW(_groups(ours, weight_decay, our_key), lr=1e-2, betas=BETAS)
    opt_theirs = torch_optimizer(_groups(theirs, weight_decay), lr=1e-2, betas=BETAS)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        x, y = torch.randn(32, 8, generator=g), torch.randint(3, (32,), generator=g)
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        for a, b in zip(ours.parameters(), theirs.parameters()):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def _adam_direction(m_hat: torch.Tensor, v_hat: torch.Tensor) -> torch.Tensor:
    return m_hat / (v_hat.sqrt() + 1e-8)


def _atan2_direction(m_hat: torch.Tensor, v_hat: torch.Tensor) -> torch.Tensor:
    return 1.27 * torch.atan2(m_hat, v_hat.sqrt())


@pytest.mark.parametrize("independent", [False, True])
@pytest.mark.parametrize("optimizer, direction", [(AdamW, _adam_direction), (AdamAtan2, _atan2_direction)])
def test_weight_decay_matches_formula(optimizer, direction, independent: bool) -> None:
    """Coupled: θ ← θ − lr_t(Δ + λθ); independent: θ ← θ − s_t(ηΔ + λθ), η the group's peak LR."""
    base_lr, lr_mult, wd, n_steps = 0.1, 0.5, 0.3, 12
    theta0 = torch.randn(5, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    param = torch.nn.Parameter(theta0.clone())
    group = {"params": [param], "lr_mult": lr_mult}
    opt = optimizer([group], lr=base_lr, betas=BETAS, weight_decay=wd, independent_wd=independent)
    schedule = [min(1.0, (t + 1) / 4) * math.cos(t / n_steps) for t in range(n_steps)]
    theta, m, v = theta0.clone(), torch.zeros_like(theta0), torch.zeros_like(theta0)
    peak = base_lr * lr_mult
    for t, (grad, s) in enumerate(zip(_grads(n_steps, theta0.shape), schedule), start=1):
        opt.param_groups[0]["lr"] = base_lr * s * lr_mult
        param.grad = grad.clone()
        opt.step()
        m = BETAS[0] * m + (1 - BETAS[0]) * grad
        v = BETAS[1] * v + (1 - BETAS[1]) * grad**2
        delta = direction(m / (1 - BETAS[0] ** t), v / (1 - BETAS[1] ** t))
        if independent:
            theta = theta - s * (peak * delta + wd * theta)
        else:
            theta = theta - s * peak * (delta + wd * theta)
        torch.testing.assert_close(param.detach(), theta, rtol=0, atol=1e-12)


@pytest.mark.parametrize("decays", [(0.2, 0.2, 0.2), (0.2, 0.0, 0.5)], ids=["shared-decay", "per-run-decay"])
@pytest.mark.parametrize("independent", [False, True])
@pytest.mark.parametrize("optimizer", [AdamW, AdamAtan2])
def test_stacked_runs_step_like_single_runs(optimizer, independent: bool, decays: tuple[float, ...]) -> None:
    """K runs stacked along dim 0 with a per-run LR vector (and weight decay and L2: a vector where they differ)
    step exactly as K single runs."""
    lrs, schedule = [1e-2, 3e-3, 0.0], [1.0, 0.5, 0.25, 0.75]
    theta0 = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    grads = _grads(len(schedule), theta0.shape)
    stacked = torch.nn.Parameter(theta0.clone())
    singles = [torch.nn.Parameter(theta0[i].clone()) for i in range(3)]
    per_run = (lambda v: torch.tensor(v, dtype=torch.float64)) if len(set(decays)) > 1 else (lambda v: v[0])
    l2s = [d / 2 for d in decays]
    kwargs = dict(betas=BETAS, independent_wd=independent)
    opts = [optimizer([{"params": [stacked], "l2": per_run(l2s)}], lr=torch.tensor(lrs, dtype=torch.float64),
                      weight_decay=per_run(decays), **kwargs)]
    opts += [optimizer([{"params": [p], "l2": l2}], lr=lr, weight_decay=wd, **kwargs)
             for p, lr, wd, l2 in zip(singles, lrs, decays, l2s)]
    for grad, s in zip(grads, schedule):
        for opt in opts:
            opt.param_groups[0]["lr"] = opt.param_groups[0]["initial_lr"] * s
        stacked.grad = grad.clone()
        for i, p in enumerate(singles):
            p.grad = grad[i].clone()
        for opt in opts:
            opt.step()
    torch.testing.assert_close(stacked.detach(), torch.stack([p.detach() for p in singles]), rtol=0, atol=1e-14)
    probe = epsilon_probe(opts[0], {"w": stacked}, per_run=True)["w"]
    single = [epsilon_probe(opt, {"w": p})["w"] for opt, p in zip(opts[1:], singles)]
    assert probe.update_rms == pytest.approx([e.update_rms for e in single], rel=1e-6)
    assert probe.sqrt_v_rms == pytest.approx([e.sqrt_v_rms for e in single], rel=1e-6)


def _run(optimizer: torch.optim.Optimizer, param: torch.nn.Parameter, grads: list[torch.Tensor]) -> None:
    for grad in grads:
        param.grad = grad.to(param.dtype)
        optimizer.step()


def test_atan2_is_scale_invariant_where_adamw_collapses() -> None:
    """Gradients scaled by 1e-9: AdamAtan2's updates are unchanged; AdamW's (ε = 1e-8) collapse."""
    grads = _grads(10, (64, 32))
    theta0 = torch.randn(64, 32, generator=torch.Generator().manual_seed(3))
    params, probes = {}, {}
    for name, optimizer in (("atan2", AdamAtan2), ("adamw", AdamW)):
        for scale in (1.0, 1e-9):
            param = torch.nn.Parameter(theta0.clone())
            opt = optimizer([param], lr=1e-3, betas=BETAS)
            _run(opt, param, [scale * g for g in grads])
            params[name, scale] = param.detach()
            probes[name, scale] = epsilon_probe(opt, {"w": param})["w"]
    torch.testing.assert_close(params["atan2", 1e-9], params["atan2", 1.0], rtol=1e-6, atol=1e-7)
    assert probes["atan2", 1e-9].update_rms == pytest.approx(probes["atan2", 1.0].update_rms, rel=1e-5)
    assert probes["adamw", 1e-9].update_rms < 1e-2 * probes["adamw", 1.0].update_rms
    assert probes["adamw", 1e-9].frac_below_eps > 0.99
    assert probes["adamw", 1.0].frac_below_eps == 0.0
    assert probes["atan2", 1e-9].eps == REFERENCE_EPS


@settings(max_examples=200, deadline=None)
@given(
    m_hat=st.floats(-1e30, 1e30, allow_subnormal=False),
    v_hat=st.floats(0.0, 1e30, allow_subnormal=False),
    a=st.floats(1e-3, 10.0),
    b=st.floats(1e-6, 10.0),
)
def test_atan2_direction_bounded(m_hat: float, v_hat: float, a: float, b: float) -> None:
    opt = AdamAtan2([torch.nn.Parameter(torch.zeros(1))], a=a, b=b)
    m, v = torch.tensor([m_hat], dtype=torch.float64), torch.tensor([v_hat], dtype=torch.float64)
    delta = opt.direction(m, v, opt.param_groups[0])
    assert abs(delta.item()) <= a * math.pi / 2 * (1 + 1e-12)


def test_atan2_step_approaches_bound_for_large_ratio() -> None:
    """With |m̂| ≫ b·√v̂ each coordinate moves by about lr·a·π/2, never more."""
    lr, a = 1e-2, 1.27
    param = torch.nn.Parameter(torch.zeros(100, dtype=torch.float64))
    opt = AdamAtan2([param], lr=lr, a=a, b=1e-9)
    _run(opt, param, [g.abs() for g in _grads(3, (100,))])
    moved = -param.detach()
    assert moved.max().item() <= 3 * lr * a * math.pi / 2
    assert moved.min().item() > 3 * lr * a * math.pi / 2 * (1 - 1e-6)


def test_lr_mult_and_initial_lr_preserved() -> None:
    model = _mlp()
    groups = _groups(model, 0.1)
    groups[0]["lr_mult"] = 0.25
    opt = AdamW(groups, lr=1e-2, independent_wd=True)
    assert [g["lr_mult"] for g in opt.param_groups] == [0.25, 1.0]
    assert [g["initial_lr"] for g in opt.param_groups] == [2.5e-3, 1e-2]
    model(torch.randn(4, 8)).sum().backward()
    opt.step()
    restored = AdamW(_groups(_mlp(), 0.1), lr=1.0)
    restored.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert [g["lr_mult"] for g in restored.param_groups] == [0.25, 1.0]
    assert [g["initial_lr"] for g in restored.param_groups] == [2.5e-3, 1e-2]


def test_params_without_grad_are_skipped() -> None:
    used, unused = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(3))
    opt = AdamW([used, unused], weight_decay=0.5)
    used.grad = torch.ones(3)
    opt.step()
    assert torch.equal(unused.detach(), torch.ones(3))
    assert unused not in opt.state and not torch.equal(used.detach(), torch.ones(3))
    assert set(epsilon_probe(opt)) == {"g0.0"}


def test_epsilon_probe_reads_torch_adamw_and_matches_the_step() -> None:
    """The probe's update RMS is the RMS of the last step divided by the LR (no decay)."""
    lr = 1e-3
    for optimizer in (AdamW, torch.optim.AdamW):
        model = _mlp()
        opt = optimizer(model.parameters(), lr=lr, weight_decay=0.0)
        for _ in range(3):
            before = [p.detach().clone() for p in model.parameters()]
            opt.zero_grad()
            model(torch.randn(16, 8)).square().mean().backward()
            opt.step()
        probe = epsilon_probe(opt, model.named_parameters())
        assert list(probe) == [n for n, _ in model.named_parameters()]
        for (name, p), old in zip(model.named_parameters(), before):
            step_rms = ((old - p.detach()) / lr).square().mean().sqrt().item()
            assert probe[name].update_rms == pytest.approx(step_rms, rel=1e-3)
            state, beta2 = opt.state[p], opt.param_groups[0]["betas"][1]
            v_hat = state["exp_avg_sq"] / (1 - beta2 ** float(state["step"]))
            assert probe[name].sqrt_v_rms == pytest.approx(v_hat.mean().sqrt().item(), rel=1e-5)
            assert probe[name].frac_below_eps == 0.0


@pytest.mark.parametrize(
    "optimizer, kwargs, message",
    [
        (AdamW, {"lr": -1.0}, "lr must be >= 0"),
        (AdamW, {"lr": torch.tensor([1e-3, -1.0])}, "lr must be >= 0"),
        (AdamW, {"betas": (1.0, 0.9)}, "betas must lie in"),
        (AdamW, {"betas": (0.9, -0.1)}, "betas must lie in"),
        (AdamW, {"eps": -1e-8}, "eps must be >= 0"),
        (AdamW, {"weight_decay": -0.1}, "weight_decay must be >= 0"),
        (AdamW, {"weight_decay": torch.tensor([0.1, -0.1])}, "weight_decay must be >= 0"),
        (AdamAtan2, {"a": 0.0}, "a must be > 0"),
        (AdamAtan2, {"b": -1.0}, "b must be > 0"),
    ],
)
def test_bad_hyperparameters_raise(optimizer, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        optimizer([torch.nn.Parameter(torch.zeros(2))], **kwargs)


@pytest.mark.parametrize("group, message", [({"lr_mult": -1.0}, "lr_mult must be >= 0"), ({"l2": -0.1}, "l2 must be >= 0")])
def test_bad_group_hyperparameters_raise(group: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        AdamW([{"params": [torch.nn.Parameter(torch.zeros(2))], **group}])
