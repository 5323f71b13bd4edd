"""Faults a cluster can be told to show, from Python (`cluster.faults`) or over HTTP (`/_sim/faults`).

Resource names match a catalogue entry by generator key ("apps/v1/deployments"), plural ("pods") or
plural.group ("deployments.apps"). Page numbers count from 1 (page 1 is the request without
`continue`). `times=None` means every time until `clear()`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kq_pipeline.simulator.catalog import ResourceType


def resource_matches(selector: str, rtype: ResourceType) -> bool:
    return selector in (rtype.key, rtype.resource, f"{rtype.resource}.{rtype.group}")


@dataclass
class _PageFault:
    resource: str
    page: int
    code: int
    times: int | None

    def take(self, rtype: ResourceType, page: int) -> bool:
        if page != self.page or not resource_matches(self.resource, rtype) or self.times == 0:
            return False
        if self.times is not None:
            self.times -= 1
        return True


class FaultController:
    """Per-cluster fault switches. Thread-safe; the request handler consults it on every request."""

    ACTIONS = (
        "latency",
        "hang",
        "fail_page",
        "expire_page",
        "throttle",
        "unauthorized",
        "refuse",
        "malformed",
        "mutate_between_pages",
        "clear",
    )

    def __init__(self, on_refuse: Callable[[bool, float | None], None] | None = None) -> None:
        self._lock = threading.Lock()
        self._on_refuse = on_refuse
        self._unhang = threading.Event()
        self._reset()

    def _reset(self) -> None:
        self.latency_ms = 0.0
        self.hanging = False
        self._unhang.set()
        self._pages: list[_PageFault] = []
        self.throttle_left = 0
        self.retry_after = 1
        self.unauthorized_all = False
        self.malformed_resources: set[str] = set()
        self._mutations: dict[str, int | None] = {}

    # --- switches -------------------------------------------------------------------------------
    def latency(self, ms: float) -> None:
        """Delay every answer by `ms` milliseconds."""
        self.latency_ms = float(ms)

    def hang(self, enabled: bool = True) -> None:
        """Accept requests and never answer them (until cleared or the server stops)."""
        with self._lock:
            self.hanging = enabled
            if enabled:
                self._unhang.clear()
            else:
                self._unhang.set()

    def fail_page(self, resource: str, page: int, code: int = 500, times: int | None = None) -> None:
        """Answer page `page` of a list of `resource` with a 500 InternalError (or another `code`; a 403 is
        worded as RBAC's Forbidden: `fail_page(r, 1, 403)` makes one kind, built-in or custom, unlistable)."""
        with self._lock:
            self._pages.append(_PageFault(resource, int(page), int(code), times))

    def expire_page(self, resource: str, page: int, times: int | None = None) -> None:
        """Answer page `page` (>= 2) with 410 Expired, as if its continue token had been compacted."""
        self.fail_page(resource, page, 410, times)

    def throttle(self, requests: int, retry_after: int = 1) -> None:
        """Answer the next `requests` requests with 429 TooManyRequests and `Retry-After`."""
        with self._lock:
            self.throttle_left, self.retry_after = int(requests), int(retry_after)

    def unauthorized(self, enabled: bool = True) -> None:
        """Answer every request with 401, as after a revoked token."""
        self.unauthorized_all = enabled

    def refuse(self, enabled: bool = True, seconds: float | None = None) -> None:
        """Stop listening (connections refused); listen again on clear(), refuse(False) or after `seconds`."""
        if self._on_refuse is not None:
            self._on_refuse(enabled, seconds)

    def malformed(self, resource: str, enabled: bool = True) -> None:
        """Serve lists (and objects) of `resource` as truncated, unparseable JSON."""
        with self._lock:
            (self.malformed_resources.add if enabled else self.malformed_resources.discard)(resource)

    def mutate_between_pages(self, resource: str, times: int | None = 1) -> None:
        """After page 1 of `resource` is served, change the store so a fresh list sees different objects."""
        with self._lock:
            self._mutations[resource] = times

    def clear(self) -> None:
        with self._lock:
            self._reset()
        if self._on_refuse is not None:
            self._on_refuse(False, None)

    def apply(self, action: str, **kwargs: Any) -> None:
        """The HTTP control entry point: one named switch with keyword arguments."""
        if action not in self.ACTIONS:
            raise ValueError(f"unknown fault action {action!r}; one of {', '.join(self.ACTIONS)}")
        getattr(self, action)(**kwargs)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "hanging": self.hanging,
                "pages": [vars(p).copy() for p in self._pages],
                "throttle_left": self.throttle_left,
                "unauthorized": self.unauthorized_all,
                "malformed": sorted(self.malformed_resources),
                "mutate_between_pages": dict(self._mutations),
            }

    # --- queries from the request handler -------------------------------------------------------
    def wait_latency(self) -> None:
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)

    def wait_while_hanging(self, stopping: threading.Event) -> bool:
        """Block while hanging; False if the server stopped meanwhile (drop the connection)."""
        while not self._unhang.wait(0.05):
            if stopping.is_set():
                return False
        return not stopping.is_set()

    def take_throttle(self) -> int | None:
        with self._lock:
            if self.throttle_left > 0:
                self.throttle_left -= 1
                return self.retry_after
        return None

    def take_page_fault(self, rtype: ResourceType, page: int) -> int | None:
        with self._lock:
            for fault in self._pages:
                if fault.take(rtype, page):
                    return fault.code
        return None

    def is_malformed(self, rtype: ResourceType) -> bool:
        return any(resource_matches(r, rtype) for r in self.malformed_resources)

    def take_mutation(self, rtype: ResourceType) -> bool:
        with self._lock:
            for sel, times in self._mutations.items():
                if resource_matches(sel, rtype) and times != 0:
                    if times is not None:
                        self._mutations[sel] = times - 1
                    return True
        return False
