"""Kinds served at two versions are converted the way the API server converts them."""

from __future__ import annotations

from kq_pipeline.simulator.catalog import Catalog
from kq_pipeline.simulator.conversions import event_v1_to_core, hpa_v1_to_v2, hpa_v2_to_v1, objects_for

HPA_V1 = {
    "apiVersion": "autoscaling/v1",
    "kind": "HorizontalPodAutoscaler",
    "metadata": {"name": "h"},
    "spec": {"maxReplicas": 5, "targetCPUUtilizationPercentage": 70},
    "status": {"currentReplicas": 2},
}


def test_hpa_round_trip_keeps_the_cpu_target():
    v2 = hpa_v1_to_v2(HPA_V1)
    assert v2["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert hpa_v2_to_v1(v2) == HPA_V1
    assert HPA_V1["apiVersion"] == "autoscaling/v1"  # inputs are not modified


def test_event_to_core_renames_fields():
    ev = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"name": "e", "namespace": "n"},
        "regarding": {"kind": "Pod", "name": "p"},
        "note": "Pulled",
        "reason": "Pulled",
        "deprecatedCount": 3,
        "reportingController": "kubelet",
        "eventTime": None,
    }
    core = event_v1_to_core(ev)
    assert (core["apiVersion"], core["message"], core["count"], core["involvedObject"]["name"]) == (
        "v1",
        "Pulled",
        3,
        "p",
    )
    assert core["source"] == {"component": "kubelet"} and "eventTime" not in core


def test_objects_for_prefers_the_generators_own_version():
    catalog = Catalog.for_minor(24)
    beta = catalog.lookup("batch", "v1beta1", "cronjobs")
    cron = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"}}
    assert objects_for(beta, {"batch/v1/cronjobs": [cron]})[0]["apiVersion"] == "batch/v1beta1"
    assert objects_for(beta, {}) == []
