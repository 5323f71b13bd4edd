"""Strip Secret values before anything else sees a listed Secret.

kubequery keeps only a Secret's metadata, `type` and `immutable`. The values are also hidden in one
more place: `kubectl apply` copies the whole manifest, data included, into the
`kubectl.kubernetes.io/last-applied-configuration` annotation, which kubequery does store. We keep
that annotation (it says who applied what) with every value of `data`/`stringData` replaced by
"REDACTED" (keys kept, still valid JSON); an annotation we cannot parse is replaced whole.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
REDACTED = "REDACTED"
UNPARSABLE = "REDACTED (last-applied-configuration could not be parsed)"
_VALUE_FIELDS = ("data", "stringData")


def redact_last_applied(text: Any) -> str:
    """The annotation with secret values replaced; the marker if it is not a JSON object."""
    if not isinstance(text, str):
        return UNPARSABLE
    try:
        doc = json.loads(text)
    except ValueError:
        return UNPARSABLE
    if not isinstance(doc, dict):
        return UNPARSABLE
    for key in _VALUE_FIELDS:
        if key not in doc or doc[key] is None:
            continue
        value = doc[key]
        doc[key] = {str(k): REDACTED for k in value} if isinstance(value, dict) else REDACTED
    # kubectl writes compact JSON followed by a newline; keep that shape.
    out = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return out + "\n" if text.endswith("\n") else out


def redact_secret(secret: dict[str, Any]) -> dict[str, Any]:
    """Remove `data`/`stringData` and redact last-applied-configuration, in place."""
    for key in _VALUE_FIELDS:
        secret.pop(key, None)
    meta = secret.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if isinstance(annotations, dict) and LAST_APPLIED in annotations:
        annotations[LAST_APPLIED] = redact_last_applied(annotations[LAST_APPLIED])
    return secret


def redact_secrets(secrets: Iterable[dict[str, Any]]) -> None:
    for s in secrets:
        if isinstance(s, dict):
            redact_secret(s)
