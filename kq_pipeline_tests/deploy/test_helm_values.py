"""deploy/helm/values.yaml for the official Dagster chart: the keys its docs and schema name.

The chart's values.schema.json (dagster-io/dagster helm/dagster) is ~100 KB and refers to remote
Kubernetes schemas, so it is not vendored; these tests assert the keys and types it defines for
what we set (names checked against that schema).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kq_pipeline.defs.assets import MAX_CLUSTERS_PER_RUN

VALUES = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "values.yaml"
CHART_TOP_LEVEL_KEYS = {
    "global",
    "generatePostgresqlPasswordSecret",
    "postgresql",
    "dagsterWebserver",
    "dagster-user-deployments",
    "runLauncher",
    "dagsterDaemon",
    "additionalInstanceConfig",
    "telemetry",
    "computeLogManager",
    "ingress",
    "serviceAccount",
    "imagePullSecrets",
    "pythonLogs",
    "retention",
    "migrate",
    "busybox",
    "scheduler",
    "rabbitmq",
    "redis",
    "flower",
    "generateCeleryConfigSecret",
}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load(VALUES.read_text())


def test_only_keys_the_chart_defines(values: dict[str, Any]) -> None:
    assert set(values) <= CHART_TOP_LEVEL_KEYS


def test_user_code_deployment_serves_our_definitions(values: dict[str, Any]) -> None:
    uds = values["dagster-user-deployments"]
    assert uds["enabled"] is True
    (dep,) = uds["deployments"]
    assert {"name", "image", "dagsterApiGrpcArgs", "port"} <= set(dep)  # required by the schema
    assert dep["dagsterApiGrpcArgs"] == ["--module-name", "kq_pipeline.definitions"]
    assert set(dep["image"]) == {"repository", "tag", "pullPolicy"}
    assert dep["image"]["pullPolicy"] in {"Always", "IfNotPresent", "Never"}
    assert isinstance(dep["image"]["tag"], str) and dep["image"]["tag"] != "latest"
    assert {"name": "kq-fleet-db"} in dep["envSecrets"]  # SecretEnvSource objects, not strings
    assert {"name": "kq-inventory-key"} in dep["envSecrets"]  # every process signs with the same key
    assert dep["podSecurityContext"]["runAsNonRoot"] is True


def test_dagster_storage_is_external_postgres_with_password_from_a_secret(values: dict[str, Any]) -> None:
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"]
    assert "postgresqlPassword" not in pg
    assert values["generatePostgresqlPasswordSecret"] is False
    assert values["global"]["postgresqlSecretName"]
    assert pg["postgresqlScheme"] == "postgresql+psycopg2"
    assert isinstance(pg["service"]["port"], int)


def test_runs_are_pods_of_the_k8s_run_launcher_with_the_fleet_dsn(values: dict[str, Any]) -> None:
    rl = values["runLauncher"]
    assert rl["type"] == "K8sRunLauncher"
    k8s = rl["config"]["k8sRunLauncher"]
    assert {"name": "kq-fleet-db"} in k8s["envSecrets"]
    assert {"name": "kq-inventory-key"} in k8s["envSecrets"]
    assert set(k8s["runK8sConfig"]) <= {
        "containerConfig",
        "podSpecConfig",
        "podTemplateSpecMetadata",
        "jobSpecConfig",
        "jobMetadata",
    }


def test_run_queue_limits_and_daemon_schedules_and_sensors(values: dict[str, Any]) -> None:
    daemon = values["dagsterDaemon"]
    assert daemon["enabled"] is True
    rc = daemon["runCoordinator"]
    assert rc["enabled"] is True and rc["type"] == "QueuedRunCoordinator"
    assert rc["config"]["queuedRunCoordinator"]["maxConcurrentRuns"] >= 1
    assert daemon["schedules"]["useThreads"] is True and daemon["sensors"]["useThreads"] is True
    # the run limit lives in the queue only: Dagster rejects concurrency.runs set as well
    assert "runs" not in values["additionalInstanceConfig"].get("concurrency", {})
    assert MAX_CLUSTERS_PER_RUN >= 1


def test_no_credentials_in_values() -> None:
    text = VALUES.read_text().lower()
    for word in ("password:", "token:", "postgresql://"):
        assert word not in text


def test_every_dagster_process_has_the_embedded_postgres_disabled(values: dict[str, Any]) -> None:
    off = {"name": "KQ_EMBEDDED_POSTGRES", "value": "0"}  # EnvVar objects: the chart's list form
    assert off in values["dagsterWebserver"]["env"]
    assert off in values["dagsterDaemon"]["env"]
    (dep,) = values["dagster-user-deployments"]["deployments"]
    assert off in dep["env"]
    assert "KQ_EMBEDDED_POSTGRES=0" in values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"]
