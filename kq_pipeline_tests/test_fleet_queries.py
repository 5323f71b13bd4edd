"""Every example query we publish answers with rows on the data `kq demo` loads.

The queries are read from sql/fleet_queries.sql and from every ```sql block of README.md at
collection time, so an example added later is covered without touching this file. An example that
returns nothing on the demo fleet teaches nothing (a label no pod has, a date the demo's
timestamps never reach), so "at least one row" is the bar.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest
from psycopg import sql

from kq_pipeline import inventory
from kq_pipeline.db.schema import apply_schema
from kq_pipeline.demo import demo_specs
from kq_pipeline.refresh import RefreshSettings, refresh_clusters
from kq_pipeline.registry import TABLES
from kq_pipeline.simulator import serve_fleet_process
from kq_pipeline.simulator.objects import generate_objects
from kq_pipeline.simulator.objects.ctx import NOW
from kq_pipeline_tests.conftest import REPO
from kq_pipeline_tests.postgres_fixtures import database_dsn

SOURCES = (REPO / "sql" / "fleet_queries.sql", REPO / "README.md")
DEMO_CLUSTERS = 5
"""`kq demo`'s default fleet size (kq_pipeline/cli.py)."""
SQL_BLOCK = re.compile(r"^```sql[ \t]*\n(.*?)^```", re.S | re.M)


def statements(text: str, first_line: int = 1) -> list[tuple[int, str]]:
    """(line number, statement) of each `;`-terminated or trailing statement, comments removed.

    Knows single-quoted strings, double-quoted identifiers and `--` comments (enough for
    examples; dollar quoting is refused rather than mis-split)."""
    if "$$" in text:
        raise ValueError("dollar-quoted SQL is not supported by this splitter")
    out: list[tuple[int, str]] = []
    buf: list[str] = []
    start: int | None = None
    line = first_line
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if quote:
            buf.append(ch)
            if ch == quote:
                quote = ""
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        elif ch == ";":
            if "".join(buf).strip():
                out.append((start or line, "".join(buf).strip()))
            buf, start = [], None
        else:
            if ch in "'\"":
                quote = ch
            if not ch.isspace() and start is None:
                start = line
            buf.append(ch)
        line += ch == "\n"
        i += 1
    if "".join(buf).strip():
        out.append((start or line, "".join(buf).strip()))
    return out


def published_queries() -> list[tuple[str, str]]:
    """(where, query) of every example: `file:line`."""
    found: list[tuple[str, str]] = []
    for path in SOURCES:
        text = path.read_text()
        if path.suffix == ".sql":
            blocks = [(1, text)]
        else:
            blocks = [(text.count("\n", 0, m.start(1)) + 1, m.group(1)) for m in SQL_BLOCK.finditer(text)]
        for first_line, block in blocks:
            found += [(f"{path.name}:{n}", q) for n, q in statements(block, first_line)]
    return found


QUERIES = published_queries()


def test_the_splitter_keeps_quoted_semicolons_and_drops_comments() -> None:
    text = "-- a; comment\nselect ';' as x; -- trailing\n\nselect \"a;b\"\nfrom t"
    assert statements(text) == [(2, "select ';' as x"), (4, 'select "a;b"\nfrom t')]


def test_both_files_publish_queries() -> None:
    """A README or SQL file whose examples stopped parsing must not leave this module testing nothing."""
    by_file = {where.split(":")[0] for where, _ in QUERIES}
    assert by_file == {p.name for p in SOURCES}
    assert all(re.match(r"(?is)^\s*(select|with)\b", q) for _, q in QUERIES)


@pytest.fixture(scope="module")
def demo_dsn(pg_server_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A private database holding what `kq demo` loads: its simulated fleet, every table, once.

    Same fleet (`demo_specs`), served from a child process as the demo does, and the same refresh
    the `kq load` job runs (refresh_clusters), into a database of this module's own so that other
    tests' per-test emptying cannot touch it."""
    name = f"kq_test_fleet_queries_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(pg_server_dsn, autocommit=True) as admin:
        admin.execute(drop)
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = database_dsn(pg_server_dsn, name)
    try:
        with psycopg.connect(dsn) as conn:
            apply_schema(conn)
        kubeconfig = tmp_path_factory.mktemp("demo") / "kubeconfig.yaml"
        with serve_fleet_process(demo_specs(DEMO_CLUSTERS), kubeconfig) as fleet:
            clusters = inventory.clusters_from_kubeconfig(fleet.kubeconfig)
            with psycopg.connect(dsn) as conn:
                inventory.upsert_clusters(conn, clusters)
            names = [c.name for c in clusters]
            outcomes = refresh_clusters(dsn, names, list(TABLES), run_id="demo", settings=RefreshSettings())
            # As the demo runs: the clusters change (churn) and are loaded again, so history has some.
            for i, name in enumerate(names):
                fleet.churn(name, 0.1, seed=i)
                fleet.churn(name, action="roll", namespace="kube-system", name="coredns")
            outcomes += refresh_clusters(
                dsn, names, list(TABLES), run_id="demo-2", settings=RefreshSettings()
            )
        assert [(o.cluster, o.ok) for o in outcomes] == [(n, True) for n in names] * 2
        yield dsn
    finally:
        with psycopg.connect(pg_server_dsn, autocommit=True) as admin:
            admin.execute(drop)


@pytest.mark.parametrize(
    ("where", "query"),
    [pytest.param(w, q, id=w) for w, q in QUERIES] or [pytest.param("", "", id="no-queries-found")],
)
def test_published_query_returns_rows_on_the_demo_fleet(demo_dsn: str, where: str, query: str) -> None:
    if not query:
        pytest.fail(f"no SQL found in {', '.join(p.name for p in SOURCES)}")
    if "history." in query:  # the demo fleet's two loads were moments ago: read history an hour on
        query = query.replace("now()", "(now() + interval '1 hour')")
    with psycopg.connect(demo_dsn) as conn:
        conn.read_only = True  # an example must not change the data the next one reads
        rows = conn.execute(query).fetchall()
    assert rows, f"{where} returns no rows on the demo fleet:\n{query}"


def _published(*needles: str) -> list[tuple[str, str]]:
    """The published queries (README and SQL file) holding every needle."""
    found = [(w, q) for w, q in QUERIES if all(n in q for n in needles)]
    assert {w.split(":")[0] for w, _ in found} == {p.name for p in SOURCES}, needles
    return found


@pytest.fixture(scope="module")
def demo_objects() -> dict[str, dict[str, list]]:
    """What the demo's simulated clusters serve (the generator is deterministic), per cluster."""
    return {spec.name: generate_objects(spec) for spec in demo_specs(DEMO_CLUSTERS)}


def test_the_expiring_certificates_query_finds_exactly_those_expiring_within_14_days(
    demo_dsn: str, demo_objects: dict[str, dict[str, list]]
) -> None:
    """Evaluated at the simulator's clock (its objects' "now"), the query returns the Certificates whose
    notAfter is less than 14 days after it: some, not all (the others are good for longer)."""
    deadline = NOW + 14 * 86400
    expected, total = set(), 0
    for cluster, objects in demo_objects.items():
        for cert in objects.get("cert-manager.io/v1/certificates", []):
            total += 1
            not_after = (cert.get("status") or {}).get("notAfter")
            if not_after and datetime.fromisoformat(not_after).timestamp() < deadline:
                expected.add((cluster, cert["metadata"]["namespace"], cert["metadata"]["name"]))
    assert 0 < len(expected) < total
    for where, query in _published("'Certificate'", "notAfter", "14 days"):
        at_sim_clock = query.replace("now()", f"to_timestamp({NOW})")
        with psycopg.connect(demo_dsn) as conn:
            rows = conn.execute(at_sim_clock).fetchall()
        assert {r[:3] for r in rows} == expected, where
        assert len(rows) == len(expected)


def test_the_out_of_sync_query_finds_every_out_of_sync_application(
    demo_dsn: str, demo_objects: dict[str, dict[str, list]]
) -> None:
    expected = {
        (cluster, app["metadata"]["namespace"], app["metadata"]["name"])
        for cluster, objects in demo_objects.items()
        for app in objects.get("argoproj.io/v1alpha1/applications", [])
        if ((app.get("status") or {}).get("sync") or {}).get("status") == "OutOfSync"
    }
    apps = sum(len(o.get("argoproj.io/v1alpha1/applications", [])) for o in demo_objects.values())
    assert 0 < len(expected) < apps and len({c for c, _, _ in expected}) > 1  # in several clusters
    for where, query in _published("'Application'", "'OutOfSync'"):
        with psycopg.connect(demo_dsn) as conn:
            rows = conn.execute(query).fetchall()
        assert {r[:3] for r in rows} == expected and len(rows) == len(expected), where
