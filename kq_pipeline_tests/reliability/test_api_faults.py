"""API faults, injected for real through the simulator: one broken cluster never hurts the others,
and a failed list never replaces the previous snapshot."""

from __future__ import annotations

import base64
import time

import psycopg
import yaml

from kq_pipeline.refresh import RefreshSettings
from kq_pipeline.simulator import serve_fleet
from kq_pipeline.simulator.objects import ClusterSpec
from kq_pipeline_tests.reliability.conftest import (
    FAULTY,
    FLEET,
    PODS,
    FleetDb,
    assert_all_ok,
    assert_others_loaded,
    assert_recovers,
    failed_tables,
    loads,
    pod_count,
    snapshot,
)


def _clean_first(fdb: FleetDb):
    assert_all_ok(fdb.load("clean"), FLEET)
    return snapshot(fdb.dsn, FAULTY)


def test_a_500_on_a_middle_page_fails_only_that_table_and_keeps_its_previous_rows(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    fleet_db.cluster().faults.fail_page("pods", page=2, code=500)  # every time: retries run out

    outcomes = fleet_db.load("faulty")

    assert_others_loaded(fleet_db, outcomes, "faulty")
    failed = failed_tables(fleet_db.dsn, "faulty", FAULTY)
    # pods feeds three tables; every other table of the cluster still loaded.
    assert set(failed) == {"kubernetes_pods", "kubernetes_pod_containers", "kubernetes_pod_volumes"}
    assert all("cluster bravo" in e and "HTTP 500 after 5 attempts" in e for e in failed.values()), failed
    assert snapshot(fleet_db.dsn, FAULTY) == before
    assert_recovers(fleet_db, "recovered")


def test_a_single_500_is_retried_and_the_list_succeeds(fleet_db: FleetDb) -> None:
    _clean_first(fleet_db)
    fleet_db.cluster().faults.fail_page("pods", page=2, code=503, times=1)
    outcomes = fleet_db.load("retried")
    assert_all_ok(outcomes, FLEET)
    assert pod_count(fleet_db.dsn, FAULTY) == PODS


def test_410_gone_mid_list_restarts_the_list_and_succeeds_without_duplicates(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    fleet_db.cluster().faults.expire_page("pods", page=3, times=1)

    outcomes = fleet_db.load("gone")

    assert_all_ok(outcomes, FLEET)
    assert fleet_db.cluster().faults.describe()["pages"][0]["times"] == 0  # the 410 was really served
    assert snapshot(fleet_db.dsn, FAULTY) == before  # the restarted list gave the same, whole snapshot


def test_410_on_every_restart_gives_up_after_the_bounded_restarts_and_keeps_the_previous_rows(
    fleet_db: FleetDb,
) -> None:
    before = _clean_first(fleet_db)
    fleet_db.cluster().faults.expire_page("pods", page=3)  # every time: the list can never finish
    outcomes = fleet_db.load("gone-for-good")
    assert_others_loaded(fleet_db, outcomes, "gone-for-good")
    failed = failed_tables(fleet_db.dsn, "gone-for-good", FAULTY)
    assert set(failed) == {"kubernetes_pods", "kubernetes_pod_containers", "kubernetes_pod_volumes"}
    assert all("410 Gone: list expired mid-way (3 restarts)" in e for e in failed.values()), failed
    assert snapshot(fleet_db.dsn, FAULTY) == before
    assert_recovers(fleet_db, "recovered")


def test_429_with_retry_after_is_honoured_and_the_load_succeeds(fleet_db: FleetDb) -> None:
    _clean_first(fleet_db)
    fleet_db.cluster().faults.throttle(requests=2, retry_after=1)
    t0 = time.monotonic()
    outcomes = fleet_db.load("throttled", names=[FAULTY])
    assert_all_ok(outcomes, [FAULTY])
    assert time.monotonic() - t0 >= 1.0  # waited as told (Retry-After: 1), not hammered
    assert fleet_db.cluster().faults.describe()["throttle_left"] == 0


def test_a_hanging_server_fails_within_the_deadline_and_does_not_stall_the_fleet(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    fleet_db.cluster().faults.hang()
    settings = RefreshSettings(concurrency=4, table_concurrency=4, deadline_s=3.0, page_limit=20)

    t0 = time.monotonic()
    outcomes = fleet_db.load("hang", settings=settings)
    elapsed = time.monotonic() - t0

    assert_others_loaded(fleet_db, outcomes, "hang")
    hung = outcomes[FAULTY]
    assert not hung.ok and "no answer within" in (hung.tables["kubernetes_pods"].error or "")
    assert 2.5 <= hung.duration_s < 6.0, hung.duration_s  # the 3 s deadline, not the 30 s socket timeout
    assert elapsed < 10.0
    for other in ("alpha", "charlie"):  # the others finished in their normal time, not after the hang
        assert outcomes[other].duration_s < hung.duration_s, outcomes[other].duration_s
    assert len(failed_tables(fleet_db.dsn, "hang", FAULTY)) == len(before)
    assert snapshot(fleet_db.dsn, FAULTY) == before
    assert_recovers(fleet_db, "recovered")


def test_401_unauthorized_fails_the_cluster_with_a_clear_auth_error(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    fleet_db.cluster().faults.unauthorized()
    outcomes = fleet_db.load("401")
    assert_others_loaded(fleet_db, outcomes, "401")
    errors = failed_tables(fleet_db.dsn, "401", FAULTY)
    assert len(errors) == len(before)
    assert all("401 Unauthorized: the credential was rejected" in e for e in errors.values()), errors
    assert snapshot(fleet_db.dsn, FAULTY) == before
    assert_recovers(fleet_db, "recovered")


def test_403_on_one_kind_fails_that_table_with_a_permission_error(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    cluster = fleet_db.cluster()
    readable = sorted({rt.resource for rt in cluster.catalog.types} - {"secrets"})
    cluster.set_rbac_rules([{"apiGroups": ["*"], "resources": readable, "verbs": ["get", "list"]}])
    outcomes = fleet_db.load("403")
    assert_others_loaded(fleet_db, outcomes, "403")
    failed = failed_tables(fleet_db.dsn, "403", FAULTY)
    assert list(failed) == ["kubernetes_secrets"]
    assert "permission denied" in failed["kubernetes_secrets"], failed
    assert (
        "403 Forbidden" in failed["kubernetes_secrets"]
        and 'cannot list resource "secrets"' in (failed["kubernetes_secrets"])
    )
    assert snapshot(fleet_db.dsn, FAULTY) == before
    cluster.set_rbac_rules(None)
    assert_recovers(fleet_db, "recovered")


def test_403_everywhere_fails_the_whole_cluster_with_a_clear_forbidden_error(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    fleet_db.cluster().set_rbac_rules([])  # RBAC on, no rules: every resource is forbidden
    outcomes = fleet_db.load("403-all")
    assert_others_loaded(fleet_db, outcomes, "403-all")
    errors = set(failed_tables(fleet_db.dsn, "403-all", FAULTY).values())
    assert errors and all("403 Forbidden" in e and "cluster bravo" in e for e in errors), errors
    assert snapshot(fleet_db.dsn, FAULTY) == before
    fleet_db.cluster().set_rbac_rules(None)
    assert_recovers(fleet_db, "recovered")


def test_a_kubeconfig_with_another_fleets_ca_fails_with_a_tls_error(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    with serve_fleet([ClusterSpec(name="elsewhere", pods=1)]) as other:
        config = yaml.safe_load(fleet_db.kubeconfig.read_text())
        wrong_ca = base64.b64encode(other.ca_pem.encode()).decode()
        for entry in config["clusters"]:
            if entry["name"] == FAULTY:
                entry["cluster"]["certificate-authority-data"] = wrong_ca
        fleet_db.kubeconfig.write_text(yaml.safe_dump(config))
    outcomes = fleet_db.load("wrong-ca")
    assert_others_loaded(fleet_db, outcomes, "wrong-ca")
    errors = failed_tables(fleet_db.dsn, "wrong-ca", FAULTY)
    assert len(errors) == len(before)
    assert all("TLS error" in e and "CERTIFICATE_VERIFY_FAILED" in e for e in errors.values()), errors
    assert snapshot(fleet_db.dsn, FAULTY) == before
    fleet_db.fleet.write_kubeconfig(fleet_db.kubeconfig)  # the right CA again
    assert_recovers(fleet_db, "recovered")


def test_connection_refused_fails_the_cluster_and_keeps_its_rows(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    fleet_db.cluster().faults.refuse()
    outcomes = fleet_db.load("refused")
    assert_others_loaded(fleet_db, outcomes, "refused")
    errors = failed_tables(fleet_db.dsn, "refused", FAULTY)
    assert len(errors) == len(before)
    assert all("connection failed" in e for e in errors.values()), errors
    assert snapshot(fleet_db.dsn, FAULTY) == before
    assert_recovers(fleet_db, "recovered")  # clear() listens again, on the same port


def test_malformed_json_fails_that_table_only(fleet_db: FleetDb) -> None:
    before = _clean_first(fleet_db)
    fleet_db.cluster().faults.malformed("deployments")
    outcomes = fleet_db.load("malformed")
    assert_others_loaded(fleet_db, outcomes, "malformed")
    failed = failed_tables(fleet_db.dsn, "malformed", FAULTY)
    assert list(failed) == ["kubernetes_deployments"]
    assert "malformed JSON" in failed["kubernetes_deployments"]
    assert snapshot(fleet_db.dsn, FAULTY) == before
    assert_recovers(fleet_db, "recovered")


def test_objects_changing_between_pages_give_the_consistent_snapshot_of_the_first_page(
    fleet_db: FleetDb,
) -> None:
    """Like etcd-backed lists, continue tokens page through the revision of page 1: the load holds
    exactly the objects that existed when the list began, and the next load sees the change."""
    cluster = fleet_db.cluster()
    _clean_first(fleet_db)
    uids_before = {p["metadata"]["uid"] for p in cluster.objects["v1/pods"]}
    cluster.faults.mutate_between_pages("pods", times=1)

    outcomes = fleet_db.load("mutating", names=[FAULTY], tables=["kubernetes_pods"])

    assert_all_ok(outcomes, [FAULTY])
    uids_after = {p["metadata"]["uid"] for p in cluster.objects["v1/pods"]}
    assert uids_after != uids_before  # the store really changed mid-list
    assert _stored_pod_uids(fleet_db) == uids_before
    assert_all_ok(fleet_db.load("next", names=[FAULTY], tables=["kubernetes_pods"]), [FAULTY])
    assert _stored_pod_uids(fleet_db) == uids_after
    assert {s for _, _, s, _ in loads(fleet_db.dsn, "mutating")} == {"success"}


def _stored_pod_uids(fdb: FleetDb) -> set[str]:
    with psycopg.connect(fdb.dsn) as conn:
        rows = conn.execute("SELECT uid FROM kubernetes_pods WHERE cluster_name = %s", (FAULTY,)).fetchall()
    return {r[0] for r in rows}
