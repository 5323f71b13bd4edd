"""How big each case is: the full sizes the targets are set for, and a smoke size (`--quick`)."""

from __future__ import annotations

from dataclasses import dataclass

# The original aggregator's published example fleet: (pods, namespaces) per cluster.
ORIGINAL_FLEET: tuple[tuple[int, int], ...] = (
    (9636, 343),
    (30324, 43),
    (9988, 29),
    (8342, 49),
    (6845, 50),
    (2943, 16),
    (3062, 33),
    (4489, 38),
)


@dataclass(frozen=True)
class Sizes:
    repeats: int = 3
    large_pods: int = 30_000
    large_namespaces: int = 43
    row_by_row_rows: int = 3_000
    """Rows timed row by row (case 2); the rate is extrapolated to all rows."""
    fleet_repeats: int = 1
    """Full fleet refreshes timed in case 3: one takes 4-10 minutes here, so one fits the 20-minute budget
    (its 200 per-cluster samples give the spread); raise it with --fleet-repeats."""
    fleet_clusters: int = 200
    fleet_pods: int = 200
    fleet_namespaces: int = 8
    fleet_run_size: int = 25
    fleet_concurrency: int = 4
    thousand_clusters: int = 1_000
    thousand_pods: int = 50
    """Case 5: many tiny clusters, to see what grows with the cluster count."""
    mechanism_pods: int = 10_000
    mechanism_repeats: int = 5
    """Case 8: samples per variant (each a fresh process listing `mechanism_pods` pods)."""
    query_fleet_scale: float = 1.0
    """Fraction of ORIGINAL_FLEET's pod counts loaded for case 4."""
    query_repeats: int = 7
    custom_objects: int = 20_000
    custom_pods: int = 20_000
    custom_namespaces: int = 40
    """Case 9: one cluster with this many custom objects (over 7 kinds) and pods, compared table by table."""

    def query_fleet(self) -> list[tuple[int, int]]:
        return [
            (
                max(3, round(p * self.query_fleet_scale)),
                max(2, min(ns, round(p * self.query_fleet_scale) // 3)),
            )
            if self.query_fleet_scale < 1
            else (p, ns)
            for p, ns in ORIGINAL_FLEET
        ]


FULL = Sizes()
QUICK = Sizes(
    repeats=2,
    fleet_repeats=2,
    large_pods=600,
    large_namespaces=6,
    row_by_row_rows=300,
    fleet_clusters=4,
    fleet_pods=20,
    fleet_namespaces=3,
    fleet_run_size=2,
    fleet_concurrency=2,
    thousand_clusters=6,
    thousand_pods=5,
    query_fleet_scale=0.02,
    query_repeats=3,
    mechanism_pods=300,
    mechanism_repeats=1,
    custom_objects=600,
    custom_pods=600,
    custom_namespaces=6,
)
