"""Private from the first byte: the embedded server's secret files are 0600 whatever the umask, and when
kq runs as root its server user may pass through the private folders above its data (an ACL entry
for it alone) but no other local user gains anything: no folder gets o+x."""

from __future__ import annotations

import errno
import logging
import os
import pwd
import stat
from pathlib import Path

import psycopg
import pytest

from kq_pipeline.db import server_user as server_user_module
from kq_pipeline.db.embedded import EmbeddedPostgres
from kq_pipeline.db.server_user import ACL_MASK, ACL_USER, ServerUser, read_acl, server_user
from kq_pipeline_tests.postgres_fixtures import TEST_SETTINGS

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="the server runs as another user only under root")
OWN_SERVER = pytest.mark.skipif(
    bool(os.environ.get("KQ_TEST_DATABASE_URL")), reason="the session uses KQ_TEST_DATABASE_URL"
)
SEARCH = 0o1


def _nobody() -> ServerUser:
    entry = pwd.getpwnam("nobody")
    return ServerUser(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _named_users(path: Path) -> dict[int, int]:
    """uid -> permissions of the ACL's named-user entries, with the mask applied (what takes effect)."""
    entries = read_acl(path) or []
    mask = next((perm for tag, perm, _ in entries if tag == ACL_MASK), 0o7)
    return {ident: perm & mask for tag, perm, ident in entries if tag == ACL_USER}


@ROOT_ONLY
@OWN_SERVER
def test_a_server_under_a_private_home_gets_search_by_acl_and_its_secrets_are_0600(pg_scratch: Path) -> None:
    home = pg_scratch / "home"  # like /root: 0700
    home.mkdir(mode=0o700)
    kq_home = home / ".kq"  # missing: the server creates it
    old_umask = os.umask(0)  # the most permissive umask: no file may depend on it
    server = EmbeddedPostgres(kq_home / "postgres", settings=TEST_SETTINGS)
    try:
        dsn = server.ensure_running()
    finally:
        os.umask(old_umask)
    try:
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        user = server_user()
        for folder in (pg_scratch, home, kq_home, server.base_dir):
            st = folder.stat()
            assert st.st_mode & 0o007 == 0, f"{folder} gained permissions for every user"
            assert _named_users(folder) == {user.uid: SEARCH}, folder  # search only, for it only
            assert stat.S_IMODE(st.st_mode) & 0o700 == 0o700
        assert stat.S_IMODE(kq_home.stat().st_mode) == 0o710  # created 0700; 0o010 is the ACL's mask
        for secret in (server.passfile, server.base_dir / "lock", server.conf_file):
            assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
        assert not (server.base_dir / "initdb-password").exists()
        assert server.data_dir.stat().st_uid == user.uid
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700

        # As the processes see it: the server user passes through but cannot list; nobody else passes.
        assert user.run(["/usr/bin/test", "-f", str(server.data_dir / "PG_VERSION")]).returncode == 0
        assert user.run(["/bin/ls", str(server.base_dir)]).returncode != 0
        assert user.run(["/usr/bin/test", "-r", str(server.passfile)]).returncode != 0
        other = _nobody()
        assert other.uid != user.uid
        assert other.run(["/usr/bin/test", "-e", str(kq_home)]).returncode != 0
    finally:
        server.stop()


def test_search_is_granted_by_an_acl_entry_that_keeps_the_mode_and_other_entries(tmp_path: Path) -> None:
    outer, inner = tmp_path / "outer", tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    outer.chmod(0o750)
    inner.chmod(0o700)
    nobody = _nobody()
    ServerUser("someone", nobody.uid + 1, nobody.gid).allow_traversal(inner)  # an entry made before
    nobody.allow_traversal(inner)
    nobody.allow_traversal(inner)  # idempotent
    assert _named_users(inner) == {nobody.uid + 1: SEARCH, nobody.uid: SEARCH}
    assert stat.S_IMODE(inner.stat().st_mode) == 0o710  # owner rwx, group bits = mask --x, other ---
    assert _named_users(outer)[nobody.uid] == SEARCH
    assert stat.S_IMODE(outer.stat().st_mode) == 0o750  # the group's r-x stays its own (mask r-x)


def test_without_acl_support_a_folder_gets_o_plus_x_and_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def unsupported(path: object, *_: object) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported", str(path))

    monkeypatch.setattr(server_user_module.os, "setxattr", unsupported)
    folder = tmp_path / "noacl"
    folder.mkdir(mode=0o700)
    with caplog.at_level(logging.WARNING, logger="kq_pipeline.db.server_user"):
        _nobody().allow_traversal(folder)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o701
    assert "no POSIX ACL support, so o+x instead" in caplog.text
