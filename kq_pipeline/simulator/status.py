"""`Status` error bodies, worded like kube-apiserver's so clients can match on reason and code."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


@dataclass
class ApiError(Exception):
    """An error the handler turns into a Status response."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": self.metadata,
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            status["details"] = self.details
        status["code"] = self.code
        return orjson.dumps(status)


def _details(resource: str, group: str, name: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = resource
    return d


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def not_found(resource: str, group: str, name: str) -> ApiError:
    qual = f"{resource}.{group}" if group else resource
    return ApiError(404, "NotFound", f'{qual} "{name}" not found', _details(resource, group, name))


def path_not_found() -> ApiError:
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def forbidden(
    user: str,
    verb: str,
    resource: str,
    group: str,
    namespace: str | None,
    name: str | None = None,
    *,
    subresource: str | None = None,
) -> ApiError:
    qual = f"{resource}.{group}" if group else resource
    subject = f'{qual} "{name}"' if name else qual
    scope = f'in the namespace "{namespace}"' if namespace else "at the cluster scope"
    named = f"{resource}/{subresource}" if subresource else resource
    msg = (
        f'{subject} is forbidden: User "{user}" cannot {verb} resource "{named}" '
        f'in API group "{group}" {scope}'
    )
    return ApiError(403, "Forbidden", msg, _details(resource, group, name))


def forbidden_path(user: str, verb: str, path: str) -> ApiError:
    return ApiError(403, "Forbidden", f'forbidden: User "{user}" cannot {verb} path "{path}"', {})


def expired(fresh_continue: str | None) -> ApiError:
    meta = {"continue": fresh_continue} if fresh_continue else {}
    return ApiError(410, "Expired", EXPIRED_MESSAGE, metadata=meta)


def too_many_requests(retry_after: int) -> ApiError:
    return ApiError(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        {"retryAfterSeconds": retry_after},
        headers={"Retry-After": str(retry_after)},
    )


def internal_error(
    message: str = 'an error on the server ("simulated") has prevented the request from succeeding',
) -> ApiError:
    return ApiError(500, "InternalError", message, {"causes": [{"message": "simulated fault"}]})


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(verb: str, resource: str, group: str) -> ApiError:
    return ApiError(
        405,
        "MethodNotAllowed",
        f"the server does not allow this method on the requested resource ({verb} {resource})",
        _details(resource, group),
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    qual = f"{resource}.{group}" if group else resource
    return ApiError(409, "AlreadyExists", f'{qual} "{name}" already exists', _details(resource, group, name))


def conflict(resource: str, group: str, name: str) -> ApiError:
    qual = f"{resource}.{group}" if group else resource
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qual} "{name}": the object has been modified; please apply '
        "your changes to the latest version and try again",
        _details(resource, group, name),
    )


def invalid(kind: str, name: str, why: str) -> ApiError:
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {why}', {"name": name, "kind": kind})
