"""The one admin-token check behind every write, for the API, Gradio and Dash alike.

Tokens come from strangers: any header or text field, of any length and
alphabet. The check compares UTF-8 bytes in constant time (``hmac`` refuses
non-ASCII ``str``), and anything malformed (empty, huge, not encodable) is
simply a wrong token, never an error.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

MAX_TOKEN_BYTES = 4096


class Access(str, Enum):
    """The outcome of a token check."""

    GRANTED = "granted"
    READ_ONLY = "read_only"  # no ADMIN_TOKEN configured: nobody may write
    DENIED = "denied"  # a missing, wrong or malformed token

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Access.GRANTED: "",
    Access.READ_ONLY: ("This deployment is read-only (no ADMIN_TOKEN configured): to add or label logos, set "
                       "ADMIN_TOKEN on the server (a Space secret) and restart."),
    Access.DENIED: "A valid admin token is required (X-Admin-Token header, or the admin token field).",
}


def _as_bytes(token: str | bytes | None) -> bytes | None:
    if isinstance(token, bytes):
        return token
    if isinstance(token, str):
        try:
            return token.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates
            return None
    return None


@dataclass(frozen=True)
class AdminAuth:
    """Checks admin tokens against the configured one.

    Example:
        >>> auth = AdminAuth("s3cret")
        >>> auth.check("s3cret"), auth.check("é"), AdminAuth(None).check("s3cret")
        (<Access.GRANTED: 'granted'>, <Access.DENIED: 'denied'>, <Access.READ_ONLY: 'read_only'>)
    """

    token: str | None
    who: str = "admin"  # the name written into the label history for changes made with this token

    def check(self, given: str | bytes | None) -> Access:
        """Whether ``given`` grants writes; never raises, whatever ``given`` is."""
        if not self.token:
            return Access.READ_ONLY
        raw = _as_bytes(given)
        if not raw or len(raw) > MAX_TOKEN_BYTES:
            return Access.DENIED
        return Access.GRANTED if hmac.compare_digest(raw, self.token.encode("utf-8")) else Access.DENIED

    def refusal(self, given: str | bytes | None) -> str | None:
        """None when ``given`` grants writes, else what to tell the person: the one check every page's write
        makes (the API's is :func:`web.deps.admin_dependency`, which answers 401 or 403).

        Example:
            >>> AdminAuth("s3cret").refusal("s3cret") is None, AdminAuth("s3cret").refusal("nope")[:15]
            (True, 'A valid admin t')
        """
        access = self.check(given)
        return None if access is Access.GRANTED else access.message


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None for any other scheme or a bare token
    (RFC 6750: the scheme is named, case-insensitively, and one space parts it from the token).

    Example:
        >>> bearer_token("Bearer s3cret"), bearer_token("bearer s3cret"), bearer_token("s3cret")
        ('s3cret', 's3cret', None)
    """
    scheme, _, token = (authorization or "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None

