"""What a benchmark case reports: metrics with their samples, targets judged on medians."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Metric:
    name: str
    unit: str
    samples: list[float]
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else float("nan")


@dataclass
class Target:
    name: str
    measured: float
    goal: float
    unit: str
    higher_is_better: bool = True

    @property
    def met(self) -> bool:
        return self.measured >= self.goal if self.higher_is_better else self.measured <= self.goal

    @property
    def margin(self) -> float:
        """measured/goal (or goal/measured when lower is better): < 1 says by how much it is missed."""
        if self.higher_is_better:
            return self.measured / self.goal if self.goal else float("inf")
        return self.goal / self.measured if self.measured else float("inf")


@dataclass
class CaseResult:
    case: str
    title: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    load: dict[str, float] = field(default_factory=dict)
    """Load average of the machine before and after the case (it is shared with other work)."""

    def add(self, name: str, unit: str, samples: list[float], note: str = "") -> Metric:
        metric = Metric(name, unit, list(samples), note)
        self.metrics.append(metric)
        return metric

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for m, raw in zip(self.metrics, out["metrics"], strict=True):
            raw["median"] = m.median
        for t, raw in zip(self.targets, out["targets"], strict=True):
            raw["met"] = t.met
            raw["margin"] = t.margin
        return out


def ratio_samples(numerator: list[float], denominator: list[float]) -> list[float]:
    """Pairwise ratios of two sample lists (same run order), so the median ratio has its own spread."""
    return [a / b for a, b in zip(numerator, denominator, strict=False) if b]


def format_value(value: float, unit: str) -> str:
    if value != value:  # NaN
        return "n/a"
    if unit in ("rows/s", "MB", "rows", "clusters", "events", "bytes"):
        return f"{value:,.0f} {unit}"
    if unit == "x":
        return f"{value:,.2f} x"
    if unit == "ms":
        return f"{value:,.2f} ms"
    if unit == "%":
        return f"{value:.0f} %"
    return f"{value:,.3f} {unit}"


def format_table(results: list[CaseResult]) -> str:
    """Plain-text table: one line per metric (median and spread), then the targets."""
    lines = [f"{'case':<22} {'metric':<46} {'median':>18} {'min..max':>22} {'n':>3}"]
    lines.append("-" * len(lines[0]))
    for r in results:
        for m in r.metrics:
            spread = (
                f"{format_value(min(m.samples), m.unit).split()[0]}..{format_value(max(m.samples), m.unit)}"
                if m.samples
                else ""
            )
            median = format_value(m.median, m.unit)
            lines.append(f"{r.case:<22} {m.name:<46} {median:>18} {spread:>22} {len(m.samples):>3}")
    lines.append("")
    lines.append(f"{'target':<60} {'measured':>18} {'goal':>18}  verdict")
    lines.append("-" * 106)
    for r in results:
        for t in r.targets:
            sign = ">=" if t.higher_is_better else "<="
            verdict = "met" if t.met else f"MISSED ({t.margin:.2f} of goal)"
            lines.append(
                f"{r.case + ': ' + t.name:<60} {format_value(t.measured, t.unit):>18} "
                f"{sign + ' ' + format_value(t.goal, t.unit):>18}  {verdict}"
            )
    return "\n".join(lines)
