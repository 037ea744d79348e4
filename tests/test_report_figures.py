"""HTML report figures of the power-law, extrapolation and stability properties, from synthetic records (no training):
each draws its panels, survives diverged (None) values, and falls back to the value panel without its data."""

from __future__ import annotations

import base64
import copy
import io
from typing import Any

import pytest
from PIL import Image, ImageStat

from pytest_scaling.report import html
from pytest_scaling.report.model import make_record

#: Pixels per panel across: the figure is 5 inches per panel at 90 dpi.
PANEL_PX = 450
#: A drawn figure has at least this share of pixels that are not near-white, and grey levels spread this much.
MIN_INK = 0.02
MIN_SPREAD = 20.0

SIZES = [1.2e4, 4.6e4, 1.8e5, 7.1e5, 2.8e6]
LOSSES = [4.1, 3.6, 3.26, 3.07, 2.95]


def _sensitivity(values: list[float], top_loss: float | None) -> dict[str, Any]:
    """A per-family LR-sensitivity block: two widths, three LRs, the top LR's loss ``top_loss`` at width 128."""
    return {"family": "gpt", "widths": [64, 128], "lrs": [1e-3, 1e-2, 1e-1], "values": values,
            "losses": [[3.4, 3.1, 3.3], [3.3, 3.0, top_loss]]}


def _logit_series(width: int, peak: float) -> list[float | None]:
    """One run's probe series, rising from a width-dependent start to ``peak`` at the last step."""
    start = width / 32
    return [start, 2 * start, 4 * start, (4 * start * peak) ** 0.5, peak]


#: Per new property, a record as a check makes it (standard fields and data keys together).
RECORDS: dict[str, dict[str, Any]] = {
    "power_law": {
        "property": "power_law", "family": "mlp", "value": 0.995, "threshold": 0.98, "widths": [32, 64, 128, 256, 512],
        "sizes": SIZES, "losses": LOSSES, "seed_std": [0.02, 0.02, 0.01, 0.015, None],
        "lrs": [0.01, 0.01, 0.005, 0.005, 0.0025], "lr_policy": "per_width",
        "fit": {"E": 2.6, "A": 25.0, "alpha": 0.3, "r2": 0.995},
    },
    "extrapolation": {
        "property": "extrapolation", "family": "mlp", "value": 0.0203, "threshold": 0.01,
        "widths": [32, 64, 128, 256, 512], "sizes": SIZES, "losses": LOSSES, "seed_std": [0.02, 0.02, 0.01, 0.015, 0.01],
        "lrs": [0.01, 0.01, 0.005, 0.005, 0.0025], "lr_policy": "per_width", "holdout": 2,
        "predicted": [3.04, 2.89], "band": [[3.01, 2.85], [3.07, 2.93]], "z_scores": [-1.5, -6.0],
        "fit": {"E": 2.6, "A": 25.0, "alpha": 0.3, "r2": 0.999},
    },
    "lr_sensitivity": {"property": "lr_sensitivity", "value": 0.08, "threshold": 0.1,
                       **_sensitivity([0.05, 0.08], 3.2)},
    "qk_layernorm_lowers_sensitivity": {
        "property": "qk_layernorm_lowers_sensitivity",
        "with_qk_layernorm": _sensitivity([0.05, 0.06], 3.2), "without_qk_layernorm": _sensitivity([0.2, 0.4], 5.5),
    },
    "no_logit_divergence": {
        "property": "no_logit_divergence", "family": "gpt", "value": 2.0, "threshold": 1.0, "caps": {"attention_logit_cap": 1e3, "log_z_cap": 20.0},
        "max_abs": {"w=64 lr=0.1 seed=0 attention logit": 30.0}, "diverged": [], "steps": [0, 6, 12, 18, 24],
        "runs": [{"width": w, "lr": lr, "seed": 0} for w in (64, 128) for lr in (0.01, 0.1, 0.316)],
        "series": {"attention logit": [_logit_series(w, peak) for w in (64, 128) for peak in (15.0, 30.0, 2e3)],
                   "|log Z|": [_logit_series(w, peak) for w in (64, 128) for peak in (12.0, 14.0, 16.0)]},
    },
    "adam_epsilon": {
        "property": "adam_epsilon", "family": "gpt", "value": 0.0, "threshold": 0.25, "rms_ratio_threshold": 10.0,
        "layers": ["embed.weight", "blocks.0.fc.weight", "lm_head.weight"], "widths": [64, 128], "lrs": [1e-3, 1e-2],
        "eps": [1e-8, 1e-8, 1e-8], "sqrt_v_rms": [[[2e-4, 1e-4], [1e-4, 5e-5]], [[3e-5, 2e-5], [1.5e-5, 1e-5]],
                                                [[1e-3, 8e-4], [5e-4, 4e-4]]],
    },
    "depth_sensitivity": {
        "property": "depth_sensitivity", "family": "gpt-L8", "value": 0.015, "threshold": 0.03, "depths": [2, 4, 8],
        "widths": [16, 64], "sensitivity": [[0.06, 0.09, 0.12], [0.04, 0.05, 0.07]],
    },
    "depth_coord_check": {
        "property": "depth_coord_check", "family": "gpt-L8", "value": 0.08, "threshold": 0.2, "depths": [2, 4, 8],
        "widths": [32, 64], "sizes": [[[1.0, 1.0, 1.0], [1.2, 1.1, 1.1]], [[1.0, 1.0, 1.0], [1.3, 1.25, 1.2]]],
    },
    "depth_lr_transfer": {
        "property": "depth_lr_transfer", "family": "gpt-L8", "value": 0.05, "threshold": 0.1, "depths": [2, 8],
        "widths": [16, 32], "lrs": [1e-3, 1e-2, 1e-1],
        "losses": [[[2.0, 1.5, 1.9], [1.9, 1.4, 1.8]], [[2.1, 1.5, 2.4], [1.9, 1.45, 2.2]]],  # [depth][width][lr]
    },
    "weight_decay": {
        "property": "weight_decay", "family": "gpt", "value": 1.0, "threshold": 0.5, "widths": [32, 64, 128],
        "names": ["embed.weight", "blocks.0.mlp.weight"], "slopes": [0.0, 1.0],
        "timescale": [[1e4, 1e4, 1e4], [1e3, 2e3, 4e3]],
    },
    "lr_curve_transfer": {
        "property": "lr_curve_transfer", "family": "gpt", "value": -0.1, "threshold": 0.25, "widths": [32, 64, 128],
        "lrs": [1e-3, 1e-2, 1e-1], "shift": [0.0, -0.1, -0.2],
        "losses": [[[2.0, 2.1], [1.5, 1.5], [1.9, 1.8]], [[1.9, 1.9], [1.4, 1.5], [1.8, 1.9]],
                   [[1.8, 1.8], [1.4, 1.4], [1.9, 2.0]]],  # [width][lr][seed]
    },
}

#: Panels each property's figure draws.
PANELS = {"power_law": 1, "extrapolation": 1, "lr_sensitivity": 2, "qk_layernorm_lowers_sensitivity": 3,
          "no_logit_divergence": 2, "adam_epsilon": 1, "depth_sensitivity": 1, "depth_coord_check": 1,
          "depth_lr_transfer": 1, "lr_curve_transfer": 1, "weight_decay": 1}


def _diverged(prop: str) -> dict[str, Any]:
    """The property's record with diverged or missing runs: None losses, std, S, band, fit and probe values."""
    values = copy.deepcopy(RECORDS[prop])
    if prop in ("power_law", "extrapolation"):
        values["losses"][-1] = None
        values["seed_std"] = [None] * len(SIZES)
    if prop == "power_law":
        values["fit"] = {"E": None, "A": None, "alpha": None, "r2": None}
    if prop == "extrapolation":
        values.update(band=None, z_scores=None)
    if prop == "lr_sensitivity":
        values["losses"][1] = [3.3, None, None]
        values["values"][1] = None
    if prop == "qk_layernorm_lowers_sensitivity":
        values["without_qk_layernorm"]["losses"] = [[3.4, None, None], [None, None, None]]
    if prop == "adam_epsilon":
        values["sqrt_v_rms"][1] = [[None, None], [None, None]]
    if prop == "depth_sensitivity":
        values["sensitivity"][1][-1] = None
    if prop == "depth_coord_check":
        values["sizes"][1][1][-1] = None
    if prop == "depth_lr_transfer":
        values["losses"][1][1][-1] = None
    if prop == "lr_curve_transfer":
        values["losses"][2][2] = [None, None]
    if prop == "weight_decay":
        values["timescale"][0] = [None, None, None]
        values["slopes"][0] = None
    if prop == "no_logit_divergence":
        for series in values["series"].values():
            series[2][-2:] = [None, None]
            series[5] = [None] * 5
    return values


def _record(values: dict[str, Any]) -> dict[str, Any]:
    """A report record made from recorded values, as the plugin makes it."""
    return make_record({"name": f"{values['property']}[gpt]", "test": "t.py::test", "values": values}, "pass")


def _image(uri: str | None) -> Image.Image:
    """The PNG in a figure's data URI, checked to be a drawing: enough non-white pixels of varied grey levels."""
    assert uri is not None and uri.startswith("data:image/png;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("L")
    assert sum(image.histogram()[:230]) / (image.width * image.height) > MIN_INK
    assert ImageStat.Stat(image).stddev[0] > MIN_SPREAD
    return image


@pytest.mark.parametrize("prop", list(RECORDS))
def test_each_property_draws_its_panels(prop: str) -> None:
    image = _image(html.figure(_record(RECORDS[prop])))
    assert image.width == PANELS[prop] * PANEL_PX and 250 <= image.height <= 400


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("prop", list(RECORDS))
def test_diverged_and_missing_values_still_draw(prop: str) -> None:
    image = _image(html.figure(_record(_diverged(prop))))
    assert image.width == PANELS[prop] * PANEL_PX


def test_the_page_has_each_figure_and_no_note_that_one_failed() -> None:
    records = [_record(values) for values in (*RECORDS.values(), *map(_diverged, RECORDS))]
    page = html.render({"environment": {}, "records": records})
    assert page.count('<img alt="') == len(records) and "(no figure" not in page


@pytest.mark.parametrize("prop", list(RECORDS))
def test_a_record_without_its_data_falls_back_to_the_value_panel(prop: str, monkeypatch: pytest.MonkeyPatch) -> None:
    record = _record({"property": prop, "value": 0.5, "threshold": 0.1, "max_abs": {}, "diverged": []})
    drawn = html.figure(record)
    monkeypatch.setattr(html, "property_figure", lambda name: ())
    assert drawn == html.figure(record)
    _image(drawn)


def test_an_old_logit_record_without_a_value_has_no_figure_and_the_page_says_so() -> None:
    values = {key: RECORDS["no_logit_divergence"][key] for key in ("property", "threshold", "max_abs", "diverged")}
    record = _record(values)
    assert html.figure(record) is None
    assert "(no figure data recorded)" in html.render({"environment": {}, "records": [record]})



def test_a_model_without_attention_draws_its_log_z_and_says_why_there_is_no_attention_panel() -> None:
    values = copy.deepcopy(RECORDS["no_logit_divergence"])
    del values["series"]["attention logit"]
    values["attention"] = "not applicable: no attention layer found"
    record = _record(values)
    assert html.figure(record) != html.figure(_record(RECORDS["no_logit_divergence"]))
    assert _image(html.figure(record)).width == PANELS["no_logit_divergence"] * PANEL_PX
    assert "(no figure" not in html.render({"environment": {}, "records": [record]})
