"""Why a database writer cannot redirect a cluster's credentials: every inventory row is signed.

`kq_meta.clusters` says where each API server and its credentials are. Anyone who can write that row
could point `server` at a host of their own, turn on TLS-skip and name a mounted token file: the
next poll would send that token to them. So kq signs the columns that say where to connect and with
what (an HMAC-SHA256 with the inventory key) whenever it writes a row (`kq clusters add`, `register`,
`trust`, the inventory file's sync), and the loader refuses a row whose signature does not match
before it opens any credential. The key is never in the database: `KQ_INVENTORY_KEY` (a deployment
gives every process the same one, from a Secret) or, for local use, `$KQ_HOME/inventory.key`,
created private (0600) on first use. A database writer without the key can delete or retire rows,
or change what is collected (`collect`), but cannot make the loader connect anywhere new or
present a credential to another server.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from functools import cache
from pathlib import Path
from typing import Any

from kq_pipeline.settings import kq_home

KEY_ENV = "KQ_INVENTORY_KEY"
KEY_FILE = "inventory.key"
MIN_KEY_CHARS = 32
SIGNED_FIELDS = (
    "name",
    "server",
    "kubeconfig",
    "context",
    "token_env",
    "token_file",
    "ca_file",
    "ca_data",
    "insecure_skip_tls_verify",
    "extractor",
)
"""What a row's signature covers: where to connect, with which credential, how TLS is checked, and
which extractor gets the credential."""


class SigningError(ValueError):
    """No usable inventory key, or a row that is not signed with it: one line for the user."""


def _deployed() -> bool:
    return os.environ.get("KQ_EMBEDDED_POSTGRES", "1") == "0"


def inventory_key() -> bytes:
    """KQ_INVENTORY_KEY, else $KQ_HOME/inventory.key (made on first use, mode 0600 from creation).

    A deployment (KQ_EMBEDDED_POSTGRES=0) must set the variable: its processes do not share a KQ_HOME,
    and a key per process would make every row look tampered with."""
    value = os.environ.get(KEY_ENV)
    if value is not None:
        if len(value.strip()) < MIN_KEY_CHARS:
            raise SigningError(f"{KEY_ENV} must hold at least {MIN_KEY_CHARS} characters")
        return value.strip().encode()
    if _deployed():
        raise SigningError(
            f"{KEY_ENV} is not set: a deployment gives every kq process the same inventory key "
            "(see docs/DEPLOY.md)"
        )
    path = kq_home() / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first
        return _read_key(path)
    try:
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
    finally:
        os.close(fd)
    return _read_key(path)


@cache
def _read_key(path: Path) -> bytes:
    """The key file's key, read once per process and path (a sensor tick signs every listed row)."""
    key = path.read_text().strip()
    if len(key) < MIN_KEY_CHARS:
        raise SigningError(f"{path} holds no usable key (at least {MIN_KEY_CHARS} characters)")
    return key.encode()


def _message(values: dict[str, Any]) -> bytes:
    return json.dumps({f: values.get(f) for f in SIGNED_FIELDS}, sort_keys=True).encode()


def sign(values: dict[str, Any]) -> str:
    """The signature of a cluster row (its column values by name)."""
    return hmac.new(inventory_key(), _message(values), hashlib.sha256).hexdigest()


def verify(values: dict[str, Any], signature: str | None) -> None:
    """Raise SigningError unless `signature` is this row's, made with this process's key."""
    name = values.get("name")
    if not signature:
        raise SigningError(
            f"cluster {name}: its inventory row is not signed (written by an older kq-pipeline, or in "
            f"the database): check it with `kq clusters list`, then `kq clusters trust {name}`"
        )
    if not hmac.compare_digest(sign(values), signature):
        raise SigningError(
            f"cluster {name}: its inventory row was changed outside kq (the signature does not match), "
            "so its credentials are not used; re-add it with `kq clusters add` or the inventory file, "
            f"or, if the change is yours, `kq clusters trust {name}` (is {KEY_ENV} the same in every "
            "process?)"
        )
