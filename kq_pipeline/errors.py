"""The exceptions that mean "the user gave bad input": the CLI prints them as one line."""

from __future__ import annotations

from kq_pipeline.collect import CollectError
from kq_pipeline.db.access import AccessError
from kq_pipeline.inventory import InventoryError
from kq_pipeline.signing import SigningError


def _user_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [InventoryError, CollectError, AccessError, SigningError]
    try:
        from kq_pipeline.kube.kubeconfig import KubeconfigError

        errors.append(KubeconfigError)
    except ImportError:  # pragma: no cover - kube package always present in a release
        pass
    try:
        from kq_pipeline.db.connection import DatabaseUnavailable

        errors.append(DatabaseUnavailable)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


USER_ERRORS = _user_errors()
