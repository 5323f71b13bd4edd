"""Tables kubequery has no Go test for, checked against the README's rules on small objects.

Each test names the rule (README section) its expected values follow from.
"""

from __future__ import annotations

from datetime import UTC, datetime

from kq_pipeline.rows import kubequery_rows, rows_for_tables

META = {
    "name": "n1",
    "namespace": "ns",
    "uid": "u-1",
    "creationTimestamp": "2021-01-21T01:08:25Z",
    "labels": {"b": "2", "a": "1"},
}
CLUSTER = {"cluster_name": "prod", "cluster_uid": "k-s"}


def test_pvc_uses_non_namespaced_common_fields_and_renders_quantities() -> None:
    """Common metadata: PVCs use GetCommonFields (no namespace); ResourceList quantities canonical."""
    pvc = {
        "metadata": META,
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": "standard",
            "resources": {"requests": {"storage": "1024Mi"}},
        },
        "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}},
    }
    assert kubequery_rows("kubernetes_persistent_volume_claims", [pvc], **CLUSTER) == [
        {
            "uid": "u-1",
            "cluster_name": "prod",
            "cluster_uid": "k-s",
            "name": "n1",
            "creation_timestamp": "1611191305",
            "labels": '{"a":"1","b":"2"}',
            "access_modes": '["ReadWriteOnce"]',
            "resources": '{"requests":{"storage":"1Gi"}}',
            "storage_class_name": "standard",
            "phase": "Bound",
            "capacity": '{"storage":"1Gi"}',
        }
    ]


def test_pv_local_sets_path_and_fs_type_but_no_volume_type() -> None:
    """PV rules: `local` sets local_path/fs_type, NOT volume_type; renamed status_* columns."""
    pv = {
        "metadata": {"name": "pv1"},
        "spec": {"local": {"path": "/mnt/d", "fsType": "ext4"}, "capacity": {"storage": "10Gi"}},
        "status": {"phase": "Available"},
    }
    row = kubequery_rows("kubernetes_persistent_volumes", [pv], cluster_name="", cluster_uid="k")[0]
    assert row["local_path"] == "/mnt/d"
    assert row["fs_type"] == "ext4"
    assert "volume_type" not in row
    assert row["status_phase"] == "Available"
    assert row["capacity"] == '{"storage":"10Gi"}'
    assert "read_only" not in row
    for always_zero in (
        "gce_persistent_disk_partition",
        "aws_elastic_block_store_partition",
        "iscsi_lun",
        "iscsi_discovery_chap_auth",
        "iscsi_session_chap_auth",
        "scale_iossl_enabled",
    ):
        assert row[always_zero] == "0"


def test_pv_csi_read_only_is_always_present() -> None:
    """PV rules: csi has plain fields in the PV API, read through &field, so read_only is always set."""
    pv = {
        "metadata": {"name": "pv2"},
        "spec": {"csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "vol-1"}},
    }
    row = kubequery_rows("kubernetes_persistent_volumes", [pv], cluster_name="", cluster_uid="k")[0]
    assert row["volume_type"] == "csi"
    assert row["csi_driver"] == "ebs.csi.aws.com"
    assert row["read_only"] == "0"
    assert "fs_type" not in row  # &"" is a pointer to an empty string: omitted


def test_pod_templates_read_template_spec_and_fan_out() -> None:
    """Pod-spec columns come from template.spec; containers/volumes fan out per element."""
    template = {
        "metadata": META,
        "template": {
            "spec": {
                "hostNetwork": True,
                "securityContext": {"runAsUser": 1000, "seLinuxOptions": {"level": "s0"}},
                "initContainers": [{"name": "init", "image": "busybox"}],
                "containers": [{"name": "app", "image": "nginx", "securityContext": {"privileged": True}}],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "c1"}},
                    {"name": "ro", "awsElasticBlockStore": {"volumeID": "vol-9", "partition": 2}},
                ],
            }
        },
    }
    out = rows_for_tables(
        [
            "kubernetes_pod_templates",
            "kubernetes_pod_template_containers",
            "kubernetes_pod_templates_volumes",
        ],
        [template],
        **CLUSTER,
    )
    [pt] = out["kubernetes_pod_templates"]
    assert (pt["host_network"], pt["host_pid"], pt["run_as_user"], pt["se_linux_options_level"]) == (
        "1",
        "0",
        "1000",
        "s0",
    )
    assert "run_as_group" not in pt and "fs_group" not in pt
    init, app = out["kubernetes_pod_template_containers"]
    assert (init["name"], init["container_type"], init["uid"], init["pod_template_name"]) == (
        "init",
        "init",
        "u-1",
        "n1",
    )
    assert "privileged" not in init
    assert (app["name"], app["container_type"], app["privileged"], app["stdin"]) == (
        "app",
        "container",
        "1",
        "0",
    )
    assert "state" not in app  # status columns belong to pod containers only
    data, ro = out["kubernetes_pod_templates_volumes"]
    # read_only of a PVC is &plain bool: always present; fs_type is not set by PVC sources
    assert (data["volume_type"], data["persistent_volume_claim_name"], data["read_only"]) == (
        "persistent_volume_claim",
        "c1",
        "0",
    )
    assert "fs_type" not in data
    assert (ro["volume_type"], ro["aws_elastic_block_store_partition"], ro["read_only"]) == (
        "aws_elastic_block_store",
        "2",
        "0",
    )


def test_resource_quotas_split_spec_and_status_hard() -> None:
    """Renamed columns: status_hard/status_used; ResourceList keys sorted, quantities canonical."""
    quota = {
        "metadata": META,
        "spec": {"hard": {"pods": "10", "cpu": "2000m"}},
        "status": {"hard": {"pods": "10", "cpu": "2"}, "used": {"cpu": "0.5", "pods": "3"}},
    }
    row = kubequery_rows("kubernetes_resource_quotas", [quota], **CLUSTER)[0]
    assert row["hard"] == '{"cpu":"2","pods":"10"}'
    assert row["status_hard"] == '{"cpu":"2","pods":"10"}'
    assert row["status_used"] == '{"cpu":"500m","pods":"3"}'
    assert "scopes" not in row and "scope_selector" not in row


def test_events_are_a_snapshot_of_adds_with_event_time_or_poll_time() -> None:
    """Events: event_type "add"; time = eventTime, or the current (poll) time when it is zero."""
    now = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
    timed = {
        "metadata": {"name": "e1", "namespace": "ns", "creationTimestamp": "2024-03-01T11:00:00Z"},
        "eventTime": "2024-03-01T11:59:00.123456Z",
        "reason": "Pulled",
        "type": "Normal",
        "regarding": {"kind": "Pod", "name": "p", "namespace": "ns", "uid": "pu"},
        "related": {"kind": "Node", "name": "n"},
    }
    untimed = {"metadata": {"name": "e2", "namespace": "ns"}, "eventTime": None, "note": "x"}
    first, second = kubequery_rows("kubernetes_events", [timed, untimed], **CLUSTER, now=now)
    assert first["time"] == str(int(datetime(2024, 3, 1, 11, 59, tzinfo=UTC).timestamp()))
    assert first["event_type"] == "add"
    assert (first["regarding_kind"], first["regarding_uid"], first["related_kind"]) == ("Pod", "pu", "Node")
    assert "related_uid" not in first
    assert second["time"] == str(int(now.timestamp()))
    assert second["creation_timestamp"] == "0"
    assert "related_kind" not in second and "regarding_kind" not in second


def test_volume_attachments_render_source_and_errors() -> None:
    """Structs are never omitted (source); pointers to structs only when set (attach_error)."""
    va = {
        "metadata": {"name": "csi-1"},
        "spec": {"attacher": "ebs", "nodeName": "node-1", "source": {"persistentVolumeName": "pv-1"}},
        "status": {"attached": True, "attachError": {"time": "2024-03-01T11:00:00Z", "message": "m"}},
    }
    row = kubequery_rows("kubernetes_volume_attachments", [va], **CLUSTER)[0]
    assert row["source"] == '{"persistentVolumeName":"pv-1"}'
    assert row["attached"] == "1"
    assert row["attach_error"] == '{"time":"2024-03-01T11:00:00Z","message":"m"}'
    assert "detach_error" not in row and "attachment_metadata" not in row
    bare = kubequery_rows("kubernetes_volume_attachments", [{}], **CLUSTER)[0]
    assert bare == {
        "cluster_name": "prod",
        "cluster_uid": "k-s",
        "creation_timestamp": "0",
        "source": "{}",
        "attached": "0",
    }


def test_pod_container_status_is_matched_by_index_and_missing_status_is_zero() -> None:
    """Pod containers: status at the SAME INDEX; a pending pod without statuses gives zero values
    (kubequery would panic; we keep the row)."""
    pod = {
        "metadata": META,
        "spec": {"containers": [{"name": "a"}, {"name": "b"}]},
        "status": {
            "containerStatuses": [
                {
                    "name": "b",
                    "ready": True,
                    "restartCount": 3,
                    "state": {"running": {"startedAt": "2024-03-01T11:00:00Z"}},
                }
            ]
        },
    }
    first, second = kubequery_rows("kubernetes_pod_containers", [pod], **CLUSTER)
    assert (first["name"], first["ready"], first["restart_count"]) == ("a", "1", "3")  # index 0 -> status "b"
    assert first["state"] == '{"running":{"startedAt":"2024-03-01T11:00:00Z"}}'
    assert (second["ready"], second["restart_count"], second["state"], second["last_termination_state"]) == (
        "0",
        "0",
        "{}",
        "{}",
    )
    assert "started" not in second and "image_id" not in second


def test_rows_for_tables_equals_separate_calls() -> None:
    pod = {
        "metadata": META,
        "spec": {"containers": [{"name": "a"}], "volumes": [{"name": "v", "emptyDir": {}}]},
    }
    tables = ["kubernetes_pods", "kubernetes_pod_containers", "kubernetes_pod_volumes"]
    together = rows_for_tables(tables, [pod, pod], **CLUSTER)
    assert together == {t: kubequery_rows(t, [pod, pod], **CLUSTER) for t in tables}
    assert [len(together[t]) for t in tables] == [2, 2, 2]
