"""Who may call ``ramtag serve``: loopback by default; elsewhere only callers with the token.

The token is compared in constant time (``hmac.compare_digest``) and never logged: uvicorn's access
log is off, and ramtag's own request log names the endpoint and the status, never a header.
"""

from __future__ import annotations

import hmac
import ipaddress

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost``: only this machine can connect."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def presented_token(headers: dict[str, str] | object) -> str | None:
    """The token a request carries: ``Authorization: Bearer T`` (what PhotoPrism's ``Key`` sends), a
    bare ``Authorization: T``, or ``X-Ramtag-Token: T``."""
    get = headers.get  # type: ignore[attr-defined]
    authorization = get("authorization")
    if authorization:
        scheme, _, rest = authorization.partition(" ")
        return rest.strip() if scheme.lower() == "bearer" and rest else authorization.strip()
    return get("x-ramtag-token")


def token_matches(presented: str | None, expected: str) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), expected.encode("utf-8"))
