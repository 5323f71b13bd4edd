"""Serve a kind at every version a cluster offers from the one version the generator wrote.

A real API server stores one version and converts on read; so do we, for the handful of kinds the
catalogue offers at two versions (CronJob, PodDisruptionBudget, HPA, Event), and for custom kinds
served at several versions (istio's VirtualService).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from kq_pipeline.simulator.catalog import ResourceType

Obj = dict[str, Any]


def _retag(api_version: str) -> Callable[[Obj], Obj]:
    def convert(obj: Obj) -> Obj:
        out = dict(obj)
        out["apiVersion"] = api_version
        return out

    return convert


def hpa_v1_to_v2(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v2"
    spec = out.get("spec") or {}
    target = spec.pop("targetCPUUtilizationPercentage", None)
    if target is not None:
        spec["metrics"] = [
            {
                "type": "Resource",
                "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}},
            }
        ]
    status = out.get("status") or {}
    current = status.pop("currentCPUUtilizationPercentage", None)
    if current is not None:
        status["currentMetrics"] = [
            {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}
        ]
    return out


def hpa_v2_to_v1(obj: Obj) -> Obj:
    out = copy.deepcopy(obj)
    out["apiVersion"] = "autoscaling/v1"
    spec = out.get("spec") or {}
    for metric in spec.pop("metrics", None) or []:
        res = metric.get("resource") or {}
        if metric.get("type") == "Resource" and res.get("name") == "cpu":
            spec["targetCPUUtilizationPercentage"] = (res.get("target") or {}).get("averageUtilization")
    status = out.get("status") or {}
    for metric in status.pop("currentMetrics", None) or []:
        res = metric.get("resource") or {}
        if metric.get("type") == "Resource" and res.get("name") == "cpu":
            status["currentCPUUtilizationPercentage"] = (res.get("current") or {}).get("averageUtilization")
    status.pop("conditions", None)
    return out


def event_v1_to_core(obj: Obj) -> Obj:
    """events.k8s.io/v1 Event → core/v1 Event (the field renames the API server applies)."""
    src = obj.get("deprecatedSource") or {}
    out: Obj = {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": copy.deepcopy(obj.get("metadata") or {}),
        "involvedObject": copy.deepcopy(obj.get("regarding") or {}),
        "reason": obj.get("reason"),
        "message": obj.get("note"),
        "source": {
            k: v
            for k, v in (
                ("component", src.get("component") or obj.get("reportingController")),
                ("host", src.get("host")),
            )
            if v
        },
        "firstTimestamp": obj.get("deprecatedFirstTimestamp"),
        "lastTimestamp": obj.get("deprecatedLastTimestamp"),
        "count": obj.get("deprecatedCount"),
        "type": obj.get("type"),
        "eventTime": obj.get("eventTime"),
        "action": obj.get("action"),
        "related": obj.get("related"),
        "reportingComponent": obj.get("reportingController") or "",
        "reportingInstance": obj.get("reportingInstance") or "",
    }
    if obj.get("series"):
        out["series"] = obj["series"]
    return {k: v for k, v in out.items() if v is not None}


# target key → [(source key, converter)], tried in order.
CONVERSIONS: dict[str, list[tuple[str, Callable[[Obj], Obj]]]] = {
    "batch/v1/cronjobs": [("batch/v1beta1/cronjobs", _retag("batch/v1"))],
    "batch/v1beta1/cronjobs": [("batch/v1/cronjobs", _retag("batch/v1beta1"))],
    "policy/v1/poddisruptionbudgets": [("policy/v1beta1/poddisruptionbudgets", _retag("policy/v1"))],
    "policy/v1beta1/poddisruptionbudgets": [("policy/v1/poddisruptionbudgets", _retag("policy/v1beta1"))],
    "events.k8s.io/v1beta1/events": [("events.k8s.io/v1/events", _retag("events.k8s.io/v1beta1"))],
    "events.k8s.io/v1/events": [("events.k8s.io/v1beta1/events", _retag("events.k8s.io/v1"))],
    "v1/events": [("events.k8s.io/v1/events", event_v1_to_core)],
    "autoscaling/v2/horizontalpodautoscalers": [("autoscaling/v1/horizontalpodautoscalers", hpa_v1_to_v2)],
    "autoscaling/v1/horizontalpodautoscalers": [("autoscaling/v2/horizontalpodautoscalers", hpa_v2_to_v1)],
}


def objects_for(rt: ResourceType, generated: dict[str, list[Obj]]) -> list[Obj]:
    """The objects to serve for `rt`: the generator's own list, else a converted one, else none.

    A custom kind's versions share one schema (as istio's and most operators' CRDs do, with conversion
    strategy None), so another version's list is served with only apiVersion rewritten.
    """
    if rt.key in generated:
        return generated[rt.key]
    for source, convert in CONVERSIONS.get(rt.key, []):
        if source in generated:
            return [convert(o) for o in generated[source]]
    if rt.custom:
        for key, objs in generated.items():
            group, _, rest = key.partition("/")
            if group == rt.group and rest.partition("/")[2] == rt.resource and isinstance(objs, list):
                return [_retag(rt.group_version)(o) for o in objs]
    return []
