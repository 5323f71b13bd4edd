"""Which version a table's kind is listed at: the registry's, else preferred, else the newest served."""

from __future__ import annotations

from kq_pipeline.extract.discovery import Discovery, version_priority
from kq_pipeline.registry import table


def rl(gv: str, *resources: tuple[str, str]) -> dict:
    return {"groupVersion": gv, "resources": [{"name": n, "kind": k} for n, k in resources]}


def test_version_priority_is_kubernetes_order() -> None:
    versions = ["v1beta1", "v2", "v1alpha1", "v1", "v2beta2", "v1beta2"]
    assert sorted(versions, key=version_priority, reverse=True) == [
        "v2",
        "v1",
        "v2beta2",
        "v1beta2",
        "v1beta1",
        "v1alpha1",
    ]


def test_registry_version_wins_when_served() -> None:
    d = Discovery(
        [rl("batch/v1", ("cronjobs", "CronJob")), rl("batch/v1beta1", ("cronjobs", "CronJob"))],
        preferred={"batch": "v1"},
    )
    assert d.resolve(table("kubernetes_cron_jobs").source).path == "/apis/batch/v1beta1/cronjobs"


def test_newer_version_when_the_registry_version_is_gone() -> None:
    d = Discovery(
        [
            rl(
                "policy/v1",
                ("poddisruptionbudgets", "PodDisruptionBudget"),
                ("poddisruptionbudgets/status", "PodDisruptionBudget"),
            )
        ],
        preferred={"policy": "v1"},
    )
    assert d.resolve(table("kubernetes_pod_disruption_budgets").source).group_version == "policy/v1"
    assert d.resolve(table("kubernetes_pod_security_policies").source) is None


def test_core_resources_list_under_api_v1() -> None:
    d = Discovery([rl("v1", ("pods", "Pod"))], preferred={"": "v1"})
    assert d.resolve(table("kubernetes_pods").source).path == "/api/v1/pods"
