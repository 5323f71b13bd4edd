"""`kq`: set up the database, manage the cluster inventory, load clusters, simulate a fleet.

`kq load` materializes the same Dagster assets the UI does, in-process, with its runs recorded in
the Dagster instance (DAGSTER_HOME, default $KQ_HOME/dagster), so CLI loads show up in the UI.
User mistakes end in a one-line message and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kq_pipeline.settings import dagster_home, kq_home

if TYPE_CHECKING:
    from dagster import DagsterInstance, ExecuteInProcessResult, JobDefinition

    from kq_pipeline.load_output import LoadConsole

USER_ERROR = 2


class UserError(Exception):
    """Raised for bad input; main() prints it without a traceback."""


def _connect_with_schema(force: bool = False):
    from kq_pipeline.db.connection import connect, resolve_dsn
    from kq_pipeline.db.schema import apply_schema

    dsn = resolve_dsn()
    conn = connect(dsn)
    apply_schema(conn, force=force)
    return dsn, conn


def cmd_db_init(args: argparse.Namespace) -> int:
    from kq_pipeline.db.connection import masked_dsn

    dsn, conn = _connect_with_schema(force=True)  # runs the DDL even when it looks current
    conn.close()
    print(f"schema ready in {masked_dsn(dsn)}")
    print(f"query it with: psql '{masked_dsn(dsn)}'")
    return 0


def cmd_db_url(args: argparse.Namespace) -> int:
    from kq_pipeline.db.connection import masked_dsn, resolve_dsn

    print(masked_dsn(resolve_dsn()))
    return 0


def cmd_db_stop(args: argparse.Namespace) -> int:
    from kq_pipeline.db.embedded import stop_embedded

    stopped = stop_embedded()
    print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    """Which database kq uses and, for the embedded one, its state; starts nothing."""
    from kq_pipeline.db.connection import configured_url, embedded_enabled, masked_dsn, resolve_dsn
    from kq_pipeline.db.embedded import embedded_status

    url = configured_url()
    if url is not None:
        print(f"external database (KQ_DATABASE_URL): {masked_dsn(url)}")
        return 0
    if not embedded_enabled():
        resolve_dsn()  # raises the one-line "not set and disabled" error
    st = embedded_status()
    state = "running" if st.running else ("stopped" if st.initialized else "not initialised")
    print(f"embedded PostgreSQL: {state}")
    rows = {
        "pid": st.pid,
        "port": st.port,
        "data dir": st.data_dir,
        "log file": st.log_file,
        "server user": st.server_user,
        "url": masked_dsn(st.dsn) if st.dsn else None,
    }
    for key, value in rows.items():
        print(f"  {key + ':':<13}{'-' if value is None else value}")
    if not st.running:
        print("  (the next kq command or Dagster run starts it)")
    return 0


def cmd_db_grant_reader(args: argparse.Namespace) -> int:
    """Give a role read access to the fleet (db/access.py), optionally limited to clusters by glob."""
    from kq_pipeline.db.access import grant_reader

    globs = [g.strip() for v in args.clusters or () for g in v.split(",") if g.strip()]
    _, conn = _connect_with_schema()
    with conn:
        reader, created = grant_reader(conn, args.role, globs)
    if created:
        print(f"created role {reader.role} (NOLOGIN): give it to people with GRANT {reader.role} TO <user>")
    scope = "every cluster" if reader.clusters is None else f"clusters {', '.join(reader.clusters)}"
    print(f"{reader.role} may read {scope} ({reader.matching} in the inventory now), their history and loads")
    return 0


def cmd_db_revoke(args: argparse.Namespace) -> int:
    from kq_pipeline.db.access import revoke_reader

    _, conn = _connect_with_schema()
    with conn:
        was_reader = revoke_reader(conn, args.role)
    print(f"{args.role} may no longer read the fleet" if was_reader else f"{args.role} was not a reader")
    return 0


def cmd_db_readers(args: argparse.Namespace) -> int:
    from kq_pipeline.db.access import list_readers

    _, conn = _connect_with_schema()
    with conn:
        readers = list_readers(conn)
    if not readers:
        print("no readers yet: kq db grant-reader ROLE [--clusters GLOB]")
    width = max((len(r.role) for r in readers), default=0)
    for r in readers:
        scope = "every cluster" if r.clusters is None else ", ".join(r.clusters)
        print(
            f"{r.role:<{width}}  {scope}  ({r.matching} clusters now; "
            f"granted {r.granted_at:%Y-%m-%d %H:%M} by {r.granted_by})"
        )
    return 0


def cmd_clusters_trust(args: argparse.Namespace) -> int:
    """Sign inventory rows as they are (signing.py): rows an older release wrote, or an edit made in
    the database on purpose. Prints each row's connection settings, so the user sees what is trusted."""
    from kq_pipeline import inventory

    if not args.names and not args.all:
        raise UserError("name the clusters to trust, or --all")
    _, conn = _connect_with_schema()
    with conn:
        signed = inventory.trust_clusters(conn, None if args.all else args.names)
        clusters = {c.name: c for c in inventory.active_clusters(conn)}
    missing = sorted(set(args.names or ()) - set(signed))
    for name in signed:
        c = clusters[name]
        where = f"kubeconfig {c.kubeconfig} context {c.context}" if c.kubeconfig else c.server
        tls = "  TLS NOT VERIFIED" if c.insecure_skip_tls_verify else ""
        print(f"trusted {name}: {where}{tls}")
    if missing:
        raise UserError(f"no such active cluster: {', '.join(missing)}")
    return 0


def _collect_options(args: argparse.Namespace) -> dict[str, Any]:
    """The selection keys given as `kq clusters add` options (repeatable, or comma-separated)."""
    options: dict[str, Any] = {}
    for key in ("tables", "custom_kinds", "exclude_namespaces"):
        values = getattr(args, key, None)
        if values:
            options[key] = [p.strip() for v in values for p in v.split(",") if p.strip()]
    if args.max_objects_per_kind is not None:
        options["max_objects_per_kind"] = args.max_objects_per_kind
    return options


def cmd_clusters_add(args: argparse.Namespace) -> int:
    from kq_pipeline import inventory
    from kq_pipeline.collect import collect_from_mapping, merged

    if args.file:
        clusters = inventory.clusters_from_yaml(args.file)
    elif args.kubeconfig:
        clusters = inventory.clusters_from_kubeconfig(
            args.kubeconfig, args.context or None, args.name or None
        )
    else:
        if not args.cluster_name or not args.server:
            raise UserError(
                "give --kubeconfig PATH, --file clusters.yaml, or NAME --server URL --token-env VAR"
            )
        clusters = [
            inventory.Cluster(
                name=args.cluster_name,
                server=args.server,
                token_env=args.token_env,
                token_file=str(Path(args.token_file).resolve()) if args.token_file else None,
                ca_file=str(Path(args.ca_file).resolve()) if args.ca_file else None,
                insecure_skip_tls_verify=args.insecure_skip_tls_verify,
                extractor=args.extractor,
                source="cli",
            )
        ]
    if args.extractor != "native" and (args.file or args.kubeconfig):
        clusters = [inventory.Cluster(**{**c.__dict__, "extractor": args.extractor}) for c in clusters]
    options = _collect_options(args)
    if options:  # on top of what a file says, key by key
        where = "cluster {}".format
        clusters = [
            replace(c, collect=collect_from_mapping(merged(c.collect.to_json(), options), where(c.name)))
            for c in clusters
        ]
    _, conn = _connect_with_schema()
    with conn:
        revived = set(inventory.removed_clusters(conn, [c.name for c in clusters]))
        inventory.upsert_clusters(conn, clusters)  # an explicit add makes a removed cluster active again
        _sync_partitions([c.name for c in inventory.active_clusters(conn)])
    for c in clusters:
        context = f", context {c.context}" if c.context else ""
        again = "; it had been removed, active again" if c.name in revived else ""
        print(f"added {c.name}  {c.server}  ({c.source}{context}{again})")
    return 0


def cmd_clusters_register(args: argparse.Namespace) -> int:
    from kq_pipeline import inventory
    from kq_pipeline.collect import collect_from_mapping, merged
    from kq_pipeline.register import register_cluster

    token_dir = Path(args.token_dir).expanduser() if args.token_dir else kq_home() / "tokens"
    name = inventory.validate_name(args.name) if args.name else inventory.name_from_context(args.context)
    _, conn = _connect_with_schema()
    with conn:
        # The selection: these options over the one stored for this cluster (registering again keeps it).
        stored = inventory.get_cluster(conn, name)
        base = stored.collect.to_json() if stored else None
    collect = collect_from_mapping(merged(base, _collect_options(args)), f"cluster {name}")
    cluster = register_cluster(
        Path(args.kubeconfig).expanduser(),
        args.context,
        name=name,
        dry_run=args.dry_run,
        token_dir=token_dir,
        out=sys.stdout,
        collect=collect,
        custom_rbac=args.custom_rbac,
        token_ttl=args.token_ttl,
    )
    if cluster is None:  # dry run: the manifests were printed, nothing changed
        return 0
    _, conn = _connect_with_schema()
    with conn:
        inventory.upsert_clusters(conn, [cluster])
        _sync_partitions([c.name for c in inventory.active_clusters(conn)])
    print(
        f"registered {cluster.name}  {cluster.server}  (token file {cluster.token_file}; collect: "
        f"{cluster.collect.summary()})"
    )
    return 0


def cmd_clusters_rotate(args: argparse.Namespace) -> int:
    """Renew a registered cluster's reader token (register.rotate_token); the inventory is only read."""
    from kq_pipeline import inventory
    from kq_pipeline.register import rotate_token

    token_dir = Path(args.token_dir).expanduser() if args.token_dir else kq_home() / "tokens"
    _, conn = _connect_with_schema()
    with conn:
        # Verified: the new token goes to the row's token file, which a database edit must not redirect.
        cluster = inventory.verified_cluster(conn, inventory.validate_name(args.name))
    if cluster is None:
        raise UserError(f"no such cluster: {args.name} (see `kq clusters list`)")
    rotate_token(
        Path(args.kubeconfig).expanduser(),
        args.context,
        cluster=cluster,
        token_dir=token_dir,
        out=sys.stdout,
        token_ttl=args.token_ttl,
    )
    return 0


def cmd_clusters_list(args: argparse.Namespace) -> int:
    from kq_pipeline import inventory

    _, conn = _connect_with_schema()
    listed = inventory.inventory_file_names()
    with conn:
        clusters = inventory.active_clusters(conn)
        ignored = inventory.removed_clusters(conn, listed[1]) if listed else []
    if not clusters:
        print("no active clusters" if ignored else "no clusters yet: kq clusters add --kubeconfig PATH")
    width = max((len(c.name) for c in clusters), default=0)
    auths = {
        c.name: (
            f"context {c.context}"
            if c.context
            else (f"token env {c.token_env}" if c.token_env else "token file")
        )
        for c in clusters
    }
    auth_width = max((len(a) for a in auths.values()), default=0)
    for c in clusters:
        line = f"{c.name:<{width}}  {c.server:<32}  {c.extractor:<9}  {auths[c.name]:<{auth_width}}"
        print(f"{line}  collect: {c.collect.summary()}")
    if listed and ignored:
        print(inventory.removed_but_listed(listed[0], ignored))
    return 0


def cmd_clusters_remove(args: argparse.Namespace) -> int:
    from kq_pipeline import inventory

    _, conn = _connect_with_schema()
    with conn:
        missing = [n for n in args.names if not inventory.retire_cluster(conn, n)]
        _sync_partitions([c.name for c in inventory.active_clusters(conn)])
    listed = inventory.inventory_file_names()
    for n in args.names:
        if n not in missing:
            line = f"removed {n} (its rows stay until deleted; see README)"
            if listed and n in listed[1]:
                # The sensor syncs that file on every tick, but never re-adds a removed cluster.
                line += f"; it is still listed in {listed[0]}, which will no longer re-add it; "
                line += "`kq clusters add` re-adds it"
            print(line)
    if missing:
        raise UserError(f"no such cluster: {', '.join(missing)}")
    return 0


def _sync_partitions(active: Sequence[str]) -> None:
    from kq_pipeline.defs.partitions import sync_partitions

    sync_partitions(_instance(), active)


def _instance():
    from dagster import DagsterInstance

    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    home = Path(os.environ["DAGSTER_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(
            "# local instance made by kq: Dagster's default storage\ntelemetry:\n  enabled: false\n"
        )
    return DagsterInstance.get()


def cmd_load(args: argparse.Namespace) -> int:
    from kq_pipeline import inventory
    from kq_pipeline.definitions import defs
    from kq_pipeline.defs.partitions import CLUSTERS_PARTITIONS_NAME
    from kq_pipeline.defs.schedules import contiguous_ranges, refresh_job
    from kq_pipeline.load_output import LoadConsole, python_logs, unexplained_warnings
    from kq_pipeline.report import one_line, truncate

    if args.concurrency < 1:
        raise UserError("--concurrency must be at least 1")
    dsn, conn = _connect_with_schema()
    with conn:
        active = [c.name for c in inventory.active_clusters(conn)]
    if not active:
        raise UserError("the inventory is empty: add clusters with `kq clusters add --kubeconfig PATH`")
    wanted = list(dict.fromkeys(args.cluster or active))
    unknown = [n for n in wanted if n not in active]
    if unknown:
        raise UserError(f"not in the inventory: {', '.join(unknown)} (see `kq clusters list`)")
    instance = _load_run_instance()
    _sync_partitions(active)
    order = instance.get_dynamic_partitions(CLUSTERS_PARTITIONS_NAME)
    job = defs.resolve_job_def(refresh_job.name)
    run_config = {
        "resources": {"polling": {"config": {"cluster_concurrency": args.concurrency}}},
        # Dagster's own lines (step events, a failed step's stack trace) only when asked: kq prints
        # every cluster's outcome itself, from kq_meta.loads and the run's failure metadata.
        "loggers": {"console": {"config": {"log_level": "INFO" if args.verbose else "CRITICAL"}}},
    }
    # --verbose interleaves Dagster's lines on stderr, which a progress line would garble
    console = LoadConsole(wanted, tables=args.tables, live=False if args.verbose else None)
    with python_logs(args.verbose) as kept:
        try:
            for start, end in contiguous_ranges(wanted, order, max_len=len(order)):
                batch = order[order.index(start) : order.index(end) + 1]
                _load_batch(job, instance, run_config, dsn, (start, end), batch, console)
        except KeyboardInterrupt:
            console.abandon()
            raise
    console.finish()
    hidden = unexplained_warnings(kept, console.failed)
    if hidden:
        first = one_line(hidden[0])
        note = f"kq: warning: {first}"
        if len(hidden) > 1:  # the count first: truncation only cuts the message
            note = f"kq: {len(hidden)} warnings (`kq load --verbose` shows them), the first: {first}"
        print(truncate(note, console.columns - 1), file=sys.stderr)
    return 1 if console.failed else 0


def _load_run_instance() -> DagsterInstance:
    """The Dagster instance for `kq load`'s in-process runs, without compute-log capture.

    Capture would send this process's stdout and stderr through `tail -F` (a second's lag on every
    line, the progress line included) and start helper processes that Ctrl-C turns into tracebacks;
    kq prints each cluster's outcome itself, and the run's events are recorded as usual."""
    from dagster import DagsterInstance
    from dagster._serdes import ConfigurableClassData

    base = _instance()
    ref = base.get_ref()
    base.dispose()
    no_capture = ConfigurableClassData(
        "dagster._core.storage.noop_compute_log_manager", "NoOpComputeLogManager", "{}\n"
    )
    return DagsterInstance.from_ref(ref._replace(compute_logs_data=no_capture))


def _load_batch(
    job: JobDefinition,
    instance: DagsterInstance,
    run_config: dict[str, Any],
    dsn: str,
    bounds: tuple[str, str],
    batch: Sequence[str],
    console: LoadConsole,
) -> None:
    """Run one range of clusters; print each cluster's line as kq_meta.loads shows it done, then a line
    for any cluster that recorded nothing there (its reason from the run's failure)."""
    from dagster._core.storage.tags import ASSET_PARTITION_RANGE_END_TAG, ASSET_PARTITION_RANGE_START_TAG
    from dagster._core.utils import make_new_run_id

    from kq_pipeline.load_output import RunWatcher
    from kq_pipeline.registry import TABLES
    from kq_pipeline.report import ClusterResult, cluster_result, strip_context

    run_id = make_new_run_id()
    watcher = RunWatcher(dsn, run_id, len(TABLES), console.cluster_done, console.tick)
    with watcher, _signal_handlers_kept():
        result = job.execute_in_process(
            instance=instance,
            run_config=run_config,
            run_id=run_id,
            tags={
                ASSET_PARTITION_RANGE_START_TAG: bounds[0],
                ASSET_PARTITION_RANGE_END_TAG: bounds[1],
                "kq/reason": "kq load",
            },
            raise_on_error=False,
        )
    failed, error, interrupted = _run_failure(result)
    if interrupted:
        from kq_pipeline.refresh import cancel_pending

        cancel_pending()
        raise KeyboardInterrupt
    for name in batch:
        if name in console.reported:
            continue
        loads = watcher.partial(name)
        partial = cluster_result(name, loads) if loads else None
        if name not in failed and (failed or result.success):  # the op finished and named only failures
            done = partial or ClusterResult(name, ok=True, reason="no kq_meta.loads record read")
            console.cluster_done(done)
            continue
        reason = failed.get(name) or (partial.reason if partial else None) or error
        console.cluster_done(
            ClusterResult(
                name,
                ok=False,
                rows=partial.rows if partial else 0,
                duration_s=partial.duration_s if partial else 0.0,
                reason=strip_context(reason or "no outcome recorded (see the run in the Dagster UI)", name),
            )
        )


def _run_failure(result: ExecuteInProcessResult) -> tuple[dict[str, str], str | None, bool]:
    """From an in-process run's events: the op's `failed_clusters` metadata, the first error's
    message (one line), and whether the run was interrupted (Ctrl-C or SIGTERM during the step)."""
    from dagster import DagsterEventType, DagsterRunStatus

    failed: dict[str, str] = {}
    error: str | None = None
    interrupted = result.dagster_run.status in (DagsterRunStatus.CANCELED, DagsterRunStatus.CANCELING)
    for event in result.all_events:
        if event.event_type not in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE):
            continue
        data = event.event_specific_data
        info = getattr(data, "error", None)
        user = getattr(data, "user_failure_data", None)
        if user is not None and "failed_clusters" in user.metadata:
            failed.update({str(k): str(v) for k, v in user.metadata["failed_clusters"].value.items()})
        elif info is not None and error is None:
            error = info.message.strip().splitlines()[0] if info.message.strip() else info.cls_name
        while info is not None:
            interrupted |= info.cls_name == "DagsterExecutionInterruptedError"
            info = info.cause or info.context
    return failed, error, interrupted


@contextmanager
def _signal_handlers_kept() -> Iterator[None]:
    """Put SIGINT and SIGTERM back as they were after an in-process run: Dagster leaves SIGTERM set
    to the SIGINT handler, which in a process started in the background is "ignore"."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            if handler is not None:
                signal.signal(sig, handler)


def cmd_simulate(args: argparse.Namespace) -> int:
    from kq_pipeline.simulator.cli import run_simulate, simulate_options

    return run_simulate(
        clusters=args.clusters,
        pods=args.pods,
        kubeconfig=Path(args.kubeconfig),
        seed=args.seed,
        **simulate_options(args),
    )


def cmd_demo(args: argparse.Namespace) -> int:
    from kq_pipeline.demo import run_demo

    if args.clusters < 1:
        raise UserError("--clusters must be at least 1")
    if not 0.0 <= args.churn <= 1.0 or args.churn_interval <= 0:
        raise UserError("--churn must be between 0 and 1 and --churn-interval positive")
    return run_demo(
        clusters=args.clusters,
        ui=not args.no_ui,
        port=args.port,
        kq=main,
        churn=args.churn,
        churn_interval=args.churn_interval,
    )


def _add_collect_options(parser: argparse.ArgumentParser, replaces: str) -> None:
    """The selection options of `kq clusters add` and `kq clusters register`."""
    what = f"(repeatable or comma-separated; '!' excludes; {replaces})"
    parser.add_argument("--tables", action="append", metavar="PATTERN", help=f"tables to collect {what}")
    parser.add_argument(
        "--custom-kinds", action="append", metavar="PATTERN", help=f"custom kinds, group/Kind globs {what}"
    )
    parser.add_argument(
        "--exclude-namespaces", action="append", metavar="PATTERN", help=f"namespaces not stored {what}"
    )
    parser.add_argument(
        "--max-objects-per-kind", type=int, metavar="N", help="custom kinds with more objects are not loaded"
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kq", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="the fleet database").add_subparsers(dest="db_command", required=True)
    db.add_parser("init", help="create or upgrade the schema").set_defaults(func=cmd_db_init)
    db.add_parser("url", help="print the database URL (password masked)").set_defaults(func=cmd_db_url)
    status_help = "which database is used; the embedded server's state, port and log"
    db.add_parser("status", help=status_help).set_defaults(func=cmd_db_status)
    db.add_parser("stop", help="stop the embedded PostgreSQL").set_defaults(func=cmd_db_stop)
    grant = db.add_parser("grant-reader", help="let a role read the fleet, or only some clusters of it")
    grant.add_argument("role", help="database role (created NOLOGIN if missing)")
    grant.add_argument(
        "--clusters",
        action="append",
        metavar="GLOB",
        help="only clusters whose names match (repeatable, or comma-separated; e.g. 'prod-eu-*')",
    )
    grant.set_defaults(func=cmd_db_grant_reader)
    revoke = db.add_parser("revoke", help="take a reader's access away (the role stays)")
    revoke.add_argument("role")
    revoke.set_defaults(func=cmd_db_revoke)
    db.add_parser("readers", help="list the roles that may read the fleet").set_defaults(func=cmd_db_readers)

    cl = sub.add_parser("clusters", help="the cluster inventory").add_subparsers(
        dest="clusters_command", required=True
    )
    add = cl.add_parser("add", help="add clusters from a kubeconfig, a YAML file, or flags")
    add.add_argument("cluster_name", nargs="?", help="cluster name (with --server)")
    add.add_argument("--kubeconfig", help="add one cluster per context of this kubeconfig")
    add.add_argument("--context", action="append", help="only this context (repeatable)")
    add.add_argument(
        "--name", action="append", help="cluster name for each --context (default: from the context)"
    )
    add.add_argument("--file", help="YAML inventory file (see README)")
    add.add_argument("--server", help="API server URL, e.g. https://host:6443")
    add.add_argument("--token-env", help="environment variable that holds the bearer token")
    add.add_argument("--token-file", help="file that holds the bearer token")
    add.add_argument("--ca-file", help="CA certificate of the API server")
    add.add_argument("--insecure-skip-tls-verify", action="store_true", help="do not verify TLS (logged)")
    add.add_argument("--extractor", choices=["native", "kubequery"], default="native")
    _add_collect_options(add, "replaces the file's setting")
    add.set_defaults(func=cmd_clusters_add)
    reg = cl.add_parser("register", help="create a read-only reader on a target cluster and add it")
    reg.add_argument("--kubeconfig", required=True, help="kubeconfig with admin rights on the target")
    reg.add_argument("--context", required=True, help="the target's context in that kubeconfig")
    reg.add_argument("--name", help="cluster name (default: from the context)")
    reg.add_argument("--dry-run", action="store_true", help="print the RBAC objects, change nothing")
    reg.add_argument("--token-dir", help="where to write the reader's token file (default $KQ_HOME/tokens)")
    _add_collect_options(reg, "replaces the stored setting; the reader's role follows it")
    reg.add_argument(
        "--custom-rbac",
        choices=["kinds", "groups"],
        default="kinds",
        help="grant each selected custom kind present now (default; a CRD installed later needs registering "
        "again), or every resource of each selected custom group",
    )
    reg.add_argument(
        "--token-ttl", default="30d", help="lifetime of the reader's token: 30d (default), 720h, 3600s..."
    )
    reg.set_defaults(func=cmd_clusters_register)
    rot = cl.add_parser("rotate", help="request a fresh reader token for a registered cluster")
    rot.add_argument("name", help="the cluster's name in the inventory")
    rot.add_argument(
        "--kubeconfig", required=True, help="kubeconfig allowed to create tokens for kq-reader (admin)"
    )
    rot.add_argument("--context", required=True, help="the target's context in that kubeconfig")
    rot.add_argument("--token-dir", help="where the token file is replaced (default $KQ_HOME/tokens)")
    rot.add_argument("--token-ttl", default="30d", help="lifetime of the new token (default 30d)")
    rot.set_defaults(func=cmd_clusters_rotate)
    cl.add_parser("list", help="list active clusters").set_defaults(func=cmd_clusters_list)
    trust = cl.add_parser("trust", help="sign inventory rows as they are (after checking them)")
    trust.add_argument("names", nargs="*", metavar="NAME")
    trust.add_argument("--all", action="store_true", help="every active cluster")
    trust.set_defaults(func=cmd_clusters_trust)
    rm = cl.add_parser("remove", help="retire clusters")
    rm.add_argument("names", nargs="+")
    rm.set_defaults(func=cmd_clusters_remove)

    load = sub.add_parser("load", help="refresh clusters now (all active ones unless --cluster is given)")
    load.add_argument("--cluster", action="append", help="cluster to load (repeatable)")
    load.add_argument("--concurrency", type=int, default=4, help="clusters polled at once (default 4)")
    load.add_argument("--tables", action="store_true", help="also print every table's rows and duration")
    load.add_argument(
        "-v", "--verbose", action="store_true", help="also print Dagster's run log and kq's own warnings"
    )
    load.set_defaults(func=cmd_load)

    sim = sub.add_parser("simulate", help="serve simulated clusters until stopped")
    sim.add_argument("--clusters", type=int, default=3)
    sim.add_argument("--pods", type=int, default=200)
    sim.add_argument(
        "--kubeconfig", required=True, help="where to write the kubeconfig (one context per cluster)"
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument(
        "--custom-objects",
        type=int,
        help="custom objects (cert-manager, Prometheus operator, Argo CD, istio kinds) per cluster that "
        "has operators; default: half the pods",
    )
    sim.add_argument(
        "--operators",
        help="comma-separated operators on every cluster (cert-manager,prometheus-operator,argocd,istio; "
        "'none' for no CRDs); default: a different set per cluster, by seed",
    )
    sim.add_argument(
        "--churn",
        type=float,
        default=0.0,
        metavar="F",
        help="share of every cluster's objects changed per interval, as a live cluster changes "
        "(pods replaced, images rolled, deployments scaled, objects deleted, nodes added and removed); "
        "e.g. 0.02; default 0: no change",
    )
    sim.add_argument(
        "--churn-interval", type=float, default=60.0, metavar="SECONDS", help="seconds between changes (60)"
    )
    sim.set_defaults(func=cmd_simulate)
    demo = sub.add_parser("demo", help="simulated fleet + embedded PostgreSQL + first load + Dagster UI")
    demo.add_argument("--clusters", type=int, default=5)
    demo.add_argument("--port", type=int, default=3000, help="Dagster UI port on 127.0.0.1")
    demo.add_argument("--no-ui", action="store_true", help="stop after the first load")
    demo.add_argument(
        "--churn",
        type=float,
        default=0.02,
        metavar="F",
        help="share of every cluster's objects changed per interval, so loads differ (default 0.02)",
    )
    demo.add_argument(
        "--churn-interval", type=float, default=60.0, metavar="SECONDS", help="seconds between changes (60)"
    )
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from kq_pipeline.errors import USER_ERRORS

    args = build_parser().parse_args(argv)
    kq_home().mkdir(mode=0o700, parents=True, exist_ok=True)  # holds the database, tokens and key
    try:
        return args.func(args)
    except (UserError, *USER_ERRORS) as exc:
        print(f"kq: error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("kq: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
