"""Who may read what: tests that log in as a reader and as a team role (real roles, real logins).

A reader reads every fleet table, the history and the freshness view, writes nothing and never sees
where credentials are; a team role sees only its clusters' rows, everywhere, with the indexes still
used; the pipeline's loads are the owner's and are not filtered.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from kq_pipeline import inventory
from kq_pipeline.db import access, history
from kq_pipeline.db.schema import apply_schema
from kq_pipeline.db.snapshot import replace_snapshot
from kq_pipeline.frames import to_frame
from kq_pipeline.registry import TABLES

CLUSTERS = ("prod-eu-1", "prod-eu-2", "staging-1", "dev-1")
PASSWORD = "reader-test-password"
_ids = itertools.count()


def _load(conn: psycopg.Connection, cluster: str, pods: int = 3) -> None:
    inventory.upsert_clusters(
        conn, [inventory.Cluster(name=cluster, server="https://127.0.0.1:1", token_file="/tmp/nope")]
    )
    rows = [
        {"uid": f"{cluster}-{i}", "name": f"p{i}", "namespace": f"ns{i % 2}", "node_name": "n1"}
        for i in range(pods)
    ]
    custom = [
        {
            "api_group": "cert-manager.io",
            "api_version": "v1",
            "kind": "Certificate",
            "resource": "certificates",
            "namespace": "ns0",
            "name": "web",
            "uid": f"{cluster}-cert",
        }
    ]
    for table, table_rows in (("kubernetes_pods", rows), ("kubernetes_custom_resources", custom)):
        replace_snapshot(
            conn,
            table,
            cluster,
            to_frame(table, table_rows, cluster_name=cluster),
            run_id="r",
            started_at=datetime.now(UTC),
            rows_extracted=len(table_rows),
        )


@pytest.fixture
def fleet(pg_dsn: str) -> str:
    with psycopg.connect(pg_dsn) as conn:
        for cluster in CLUSTERS:
            _load(conn, cluster)
    return pg_dsn


@pytest.fixture
def login(fleet: str) -> Iterator[Callable[..., tuple[str, Callable[[], psycopg.Connection]]]]:
    """login(clusters=(...)) -> (role, connect): a LOGIN role made a reader; dropped afterwards."""
    made: list[str] = []

    def make(*clusters: str, member_of: str | None = None) -> tuple[str, Callable[[], psycopg.Connection]]:
        role = f"kq_test_{os.getpid()}_{next(_ids)}"
        with psycopg.connect(fleet, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role), PASSWORD))
            made.append(role)
            if member_of:
                conn.execute(
                    sql.SQL("GRANT {} TO {}").format(sql.Identifier(member_of), sql.Identifier(role))
                )
            else:
                access.grant_reader(conn, role, clusters)
        params = conninfo_to_dict(fleet)
        params.pop("passfile", None)
        dsn = make_conninfo(**{**params, "user": role, "password": PASSWORD})
        return role, lambda: psycopg.connect(dsn, autocommit=True)

    yield make
    with psycopg.connect(fleet, autocommit=True) as conn:
        for role in reversed(made):
            access.revoke_reader(conn, role)
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _clusters(conn: psycopg.Connection, source: str) -> list[str]:
    return [c for (c,) in conn.execute(f"SELECT DISTINCT cluster_name FROM {source} ORDER BY 1").fetchall()]


def test_a_reader_reads_every_fleet_table_and_the_history_and_writes_nothing(login) -> None:
    _, connect = login()
    with connect() as conn:
        for table in TABLES:
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table)))
            conn.execute(sql.SQL("SELECT count(*) FROM {}").format(history.ident(table)))
        assert _clusters(conn, "kubernetes_pods") == sorted(CLUSTERS)
        assert _clusters(conn, "history.changes") == sorted(CLUSTERS)
        assert _clusters(conn, "kq_latest_loads") == sorted(CLUSTERS)
        for statement in (
            "DELETE FROM kubernetes_pods",
            "UPDATE history.kubernetes_pods SET valid_to = now()",
            "INSERT INTO kq_meta.loads (cluster_name, table_name, status, started_at, finished_at)"
            " VALUES ('x', 'y', 'success', now(), now())",
            "UPDATE kq_meta.clusters SET server = 'https://evil.example'",
            "DELETE FROM history.change_log",
            "CREATE TABLE public.mine (x int)",
            "CREATE TABLE history.mine (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_a_reader_sees_cluster_names_but_not_where_credentials_are(login) -> None:
    _, connect = login()
    with connect() as conn:
        assert [n for (n,) in conn.execute("SELECT name FROM kq_meta.clusters ORDER BY 1")] == sorted(
            CLUSTERS
        )
        for column in ("server", "kubeconfig", "context", "token_env", "token_file", "ca_file", "ca_data"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(sql.SQL("SELECT {} FROM kq_meta.clusters").format(sql.Identifier(column)))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM kq_meta.clusters")


def test_a_team_role_sees_only_its_clusters_in_every_table_history_and_freshness(login, fleet) -> None:
    team, connect = login("prod-eu-*")
    _, member = login(member_of=team)  # a person given the team role sees what the team sees
    for conn_of in (connect, member):
        with conn_of() as conn:
            for source in (
                "kubernetes_pods",
                "kubernetes_custom_resources",
                "history.kubernetes_pods",
                "history.kubernetes_custom_resources",
                "history.changes",
                "kq_latest_loads",
            ):
                assert _clusters(conn, source) == ["prod-eu-1", "prod-eu-2"], source
            for table in TABLES:  # and every other table (empty here but for the two above)
                assert set(_clusters(conn, table)) <= {"prod-eu-1", "prod-eu-2"}, table
            assert [n for (n,) in conn.execute("SELECT name FROM kq_meta.clusters ORDER BY 1")] == [
                "prod-eu-1",
                "prod-eu-2",
            ]
            assert [r for (r,) in conn.execute("SELECT role FROM kq_meta.readers")] == [team]
    with psycopg.connect(fleet) as owner:
        _load(owner, "prod-eu-3")  # added later: matched at query time, no new grant
        _load(owner, "prod-us-1")
        assert len(_clusters(owner, "kubernetes_pods")) == len(CLUSTERS) + 2  # the owner is not filtered
    with connect() as conn:
        assert _clusters(conn, "kubernetes_pods") == ["prod-eu-1", "prod-eu-2", "prod-eu-3"]


def test_a_table_created_by_a_later_release_is_granted_and_filtered_like_the_others(login, fleet) -> None:
    team, connect = login("dev-*")
    with psycopg.connect(fleet, autocommit=True) as owner:  # as an older release that lacked the table
        owner.execute("DROP TABLE kubernetes_pod_templates, history.kubernetes_pod_templates")
        apply_schema(owner)  # the upgrade: creates it, its policy, and the readers' grants
        rows = [{"uid": f"t{c}", "name": "t", "namespace": "ns"} for c in ("dev-1", "staging-1")]
        for cluster, row in zip(("dev-1", "staging-1"), rows, strict=True):
            typed = to_frame("kubernetes_pod_templates", [row], cluster_name=cluster)
            replace_snapshot(
                owner,
                "kubernetes_pod_templates",
                cluster,
                typed,
                run_id="r",
                started_at=datetime.now(UTC),
                rows_extracted=1,
            )
    with connect() as conn:
        assert _clusters(conn, "kubernetes_pod_templates") == ["dev-1"]
        assert _clusters(conn, "history.kubernetes_pod_templates") == ["dev-1"]


def test_a_team_roles_query_uses_the_cluster_index(login, fleet) -> None:
    with psycopg.connect(fleet) as owner:
        for i in range(40):
            _load(owner, f"bulk-{i}", pods=200)
        owner.execute("ANALYZE kubernetes_pods")
    _, connect = login("prod-eu-*")
    with connect() as conn:
        plan = "\n".join(
            r for (r,) in conn.execute("EXPLAIN SELECT * FROM kubernetes_pods WHERE namespace = 'ns1'")
        )
    assert "kubernetes_pods_cluster_name_namespace_idx" in plan, plan
    assert "Seq Scan on kubernetes_pods" not in plan, plan


def test_revoking_takes_the_access_away_and_the_listing_follows(login, fleet) -> None:
    team, connect = login("staging-*")
    with psycopg.connect(fleet) as owner:
        readers = {r.role: r for r in access.list_readers(owner)}
        assert readers[team].clusters == ("staging-*",) and readers[team].matching == 1
        assert access.revoke_reader(owner, team)
        assert team not in {r.role for r in access.list_readers(owner)}
        assert not access.revoke_reader(owner, team)
    with connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM kubernetes_pods")


def test_grants_that_row_level_security_could_not_enforce_are_refused(fleet) -> None:
    with psycopg.connect(fleet) as owner:
        me = owner.execute("SELECT current_user").fetchone()[0]
        with pytest.raises(access.AccessError, match="the pipeline's own role"):
            access.grant_reader(owner, me)
        with pytest.raises(access.AccessError, match="invalid cluster glob"):
            access.grant_reader(owner, "analyst", ["prod_%"])
        with pytest.raises(access.AccessError, match="invalid role name"):
            access.grant_reader(owner, 'x"; DROP TABLE kubernetes_pods; --')
    role = f"kq_test_super_{os.getpid()}"
    with psycopg.connect(fleet, autocommit=True) as owner:
        owner.execute(sql.SQL("CREATE ROLE {} BYPASSRLS").format(sql.Identifier(role)))
        try:
            with pytest.raises(access.AccessError, match="BYPASSRLS"):
                access.grant_reader(owner, role, ["prod-*"])
        finally:
            owner.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
