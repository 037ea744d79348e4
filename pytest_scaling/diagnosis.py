"""Diagnosis of a failing property: rerun it with each known fix applied to the family, and say which restores it.

``diagnose(scaling, family, property)`` runs the property as written (``diagnose_failure``, used by the suite right
after a failure, reads the session's latest record of it instead) and, when it fails, once per intervention the property names (``Property.interventions``) that applies to the
family, at most ``max_interventions``, each on the property's own grid and through the session's run cache. The
result is a table (the property's value and verdict per intervention) and a one-line conclusion naming what restored
it and what did not; it is attached to the property's record (``data["diagnosis"]``), which the reports render.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import pytest
from tabulate import tabulate

from .property import Property

if TYPE_CHECKING:
    from .family import ModelFamily
    from .interventions import Intervention

AS_WRITTEN = "as written"


@dataclass(frozen=True)
class Trial:
    """The property on one variant of the family: ``value`` and ``passed`` (None: no verdict; ``note`` says why)."""

    name: str
    summary: str
    value: float | None = None
    passed: bool | None = None
    note: str = ""

    @property
    def verdict(self) -> str:
        return {True: "pass", False: "fail", None: "no verdict"}[self.passed]


@dataclass(frozen=True)
class Diagnosis:
    """What each tried intervention did to a failing property; ``not_tried``: those that did not apply or were over
    the budget, each with its reason."""

    property: str
    family: str
    threshold: float | None
    worse: str
    as_written: Trial
    trials: tuple[Trial, ...] = ()
    not_tried: tuple[Trial, ...] = ()

    @property
    def restored_by(self) -> list[Trial]:
        return [trial for trial in self.trials if trial.passed]

    def _distance(self, trial: Trial) -> float:
        """How far a trial's value is on the worse side (smaller is closer to passing)."""
        if trial.value is None:
            return float("inf")
        return abs(trial.value) if self.worse == "higher_abs" else trial.value

    @property
    def best(self) -> Trial | None:
        """The tried intervention whose value came closest to passing, or None if none gave a value."""
        valued = [trial for trial in self.trials if trial.value is not None]
        return min(valued, key=self._distance) if valued else None

    def conclusion(self) -> str:
        """One line: what restored the property and what did not (or that nothing did, and the closest)."""
        before = _num(self.as_written.value)
        if self.as_written.passed:
            return f"{self.property} passes as written: nothing to diagnose"
        if not self.trials:
            return f"no intervention applies to {self.family} for {self.property}" + (
                f" ({'; '.join(f'{t.summary}: {t.note}' for t in self.not_tried)})" if self.not_tried else "")
        others = [t for t in self.trials if not t.passed]
        not_by = "; not by: " + ", ".join(f"{t.summary} ({_num(t.value) if t.value is not None else t.note})"
                                          for t in others) if others else ""
        if self.restored_by:
            return "restored by: " + ", ".join(f"{t.summary} ({before} → {_num(t.value)})" for t in self.restored_by) + not_by
        best = self.best
        closest = (f"; closest: {best.summary} ({before} → {_num(best.value)}, threshold {_num(self.threshold)})"
                   if best is not None else "")
        return f"no single intervention restores {self.property}{closest}" + not_by.replace("; not by", "; tried")

    def table(self, tablefmt: str = "simple") -> str:
        rows = [[t.summary if t.name != AS_WRITTEN else AS_WRITTEN, _num(t.value), t.verdict, t.note]
                for t in (self.as_written, *self.trials)]
        rows += [[t.summary, "—", "not run", t.note] for t in self.not_tried]
        return tabulate(rows, headers=["intervention", "value", "verdict", "note"], tablefmt=tablefmt,
                        disable_numparse=True)

    def render(self) -> str:
        """The diagnosis for a terminal or a failure message: heading, table, conclusion."""
        return "\n".join([f"diagnosis of {self.property} on {self.family} (threshold {_num(self.threshold)}; each row "
                          "reruns the property with one intervention):", "", self.table(), "", self.conclusion()])

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, with the conclusion (what a report stores)."""
        return {**asdict(self), "conclusion": self.conclusion()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Diagnosis":
        """A diagnosis back from ``to_dict``'s form (a report's record data)."""
        trial_fields = {f for f in Trial.__dataclass_fields__}

        def trial(item: dict[str, Any]) -> Trial:
            return Trial(**{k: v for k, v in item.items() if k in trial_fields})

        return cls(data["property"], data["family"], data.get("threshold"), data["worse"], trial(data["as_written"]),
                   tuple(trial(t) for t in data.get("trials", ())), tuple(trial(t) for t in data.get("not_tried", ())))


def _intervention(name: str) -> Intervention:
    """An intervention by name (imported on use: rendering a stored diagnosis needs no torch)."""
    return importlib.import_module(".interventions", __package__).get(name)


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def _last_record(scaling: Any, prop: Property, family: str) -> dict[str, Any] | None:
    for record in reversed(scaling.records):
        values = record["values"]
        if values.get("property") == prop.name and values.get("family") == family:
            return record
    return None


def _run(scaling: Any, prop: Property, family: ModelFamily, grid: Any) -> tuple[bool | None, str]:
    """Run the property; (passed, note): None with the reason when it came to no verdict."""
    try:
        prop.run(scaling, family, grid)
    except AssertionError as failure:
        title = str(failure).splitlines()[0] if str(failure) else ""
        return False, title if "inconclusive" in title else ""  # a plain failure's title repeats the verdict
    except pytest.skip.Exception as skipped:
        return None, f"skipped: {skipped.msg}"
    except (pytest.fail.Exception, Exception) as error:  # an intervention the model does not survive
        message = getattr(error, "msg", None) or str(error) or type(error).__name__
        return None, f"error: {message.splitlines()[0]}"
    return True, ""


def _trial(scaling: Any, prop: Property, family: ModelFamily, grid: Any, fix: Intervention) -> Trial:
    """The property on ``family`` with ``fix``, its records kept out of the session's (the report shows the table)."""
    saved, scaling.records = scaling.records, []
    try:
        try:
            intervened = fix.apply(family)
        except (ValueError, TypeError, RuntimeError) as error:
            return Trial(fix.name, fix.summary, note=f"error: {str(error).splitlines()[0]}")
        passed, note = _run(scaling, prop, intervened, grid)
        record = _last_record(scaling, prop, intervened.name)
    finally:
        scaling.records = saved
    value = None if record is None else record["values"].get("value")
    if record is not None and record["values"].get("applicable") is False:
        note = f"no longer applies: {record['values'].get('reason')}"
    return Trial(fix.name, fix.summary, value, passed, note)


def diagnose(scaling: Any, family: ModelFamily, property: str | Property, grid: Any = None, *,
             interventions: tuple[str, ...] | None = None, max_interventions: int = 4) -> Diagnosis:
    """Run ``property`` on ``family`` (``grid``, else the tier's) and, if it fails, rerun it with each relevant
    intervention (``interventions``: names, default the property's own list); the diagnosis is returned and attached
    to the property's record. A property that passes as written is not diagnosed. At most ``max_interventions``
    interventions train; those that do not apply are listed with why. Runs come from the session's cache when there."""
    if not isinstance(property, Property):
        from .properties import get  # the registry imports torch: not at plugin load, which renders diagnoses

        property = get(property)
    prop = property
    _check_arguments(interventions, max_interventions)
    passed, note = _run(scaling, prop, family, grid)
    return _after(scaling, family, prop, grid, Trial(AS_WRITTEN, AS_WRITTEN, passed=passed, note=note),
                  interventions, max_interventions)


def diagnose_failure(scaling: Any, family: ModelFamily, prop: Property, grid: Any = None, *,
                     max_interventions: int = 4) -> Diagnosis:
    """The diagnosis of a property that has just failed on ``family`` in this session (its record is the latest)."""
    return _after(scaling, family, prop, grid, Trial(AS_WRITTEN, AS_WRITTEN, passed=False), None, max_interventions)


def _check_arguments(interventions: tuple[str, ...] | None, max_interventions: int) -> None:
    if interventions is not None:
        for name in interventions:
            _intervention(name)
    if not isinstance(max_interventions, int) or isinstance(max_interventions, bool) or max_interventions < 1:
        raise ValueError(f"max_interventions must be a positive int, got {max_interventions!r}")


def _after(scaling: Any, family: ModelFamily, prop: Property, grid: Any, as_written: Trial,
           interventions: tuple[str, ...] | None, max_interventions: int) -> Diagnosis:
    """Try the interventions when ``as_written`` failed; attach the diagnosis to the property's latest record."""
    record = _last_record(scaling, prop, family.name)
    values = record["values"] if record is not None else {}
    as_written = Trial(AS_WRITTEN, AS_WRITTEN, values.get("value"), as_written.passed, as_written.note)
    trials: list[Trial] = []
    not_tried: list[Trial] = []
    if as_written.passed is False:
        for fix in (_intervention(name) for name in (prop.interventions if interventions is None else interventions)):
            try:
                reason = fix.unavailable(family)
            except Exception as error:  # the check itself runs the model: a model it cannot run is reported, not raised
                reason = f"could not be checked ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
            if reason is not None:
                not_tried.append(Trial(fix.name, fix.summary, note=f"not applicable: {reason}"))
            elif len(trials) >= max_interventions:
                not_tried.append(Trial(fix.name, fix.summary, note=f"over the budget of {max_interventions}"))
            else:
                trials.append(_trial(scaling, prop, family, grid, fix))
    diagnosis = Diagnosis(prop.name, family.name, values.get("threshold"), prop.worse, as_written, tuple(trials),
                          tuple(not_tried))
    if record is not None:
        record["values"]["diagnosis"] = diagnosis.to_dict()
    return diagnosis
