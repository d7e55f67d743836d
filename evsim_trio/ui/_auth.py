"""UI authentication: `basic-auth` (the Authorization header) and `protocol-basic-auth`.

`protocol-basic-auth` carries the credentials in an extra WebSocket subprotocol,
`authorization.basic.<base64 of user:password without padding>`, for clients (browsers) that
cannot set headers on a WebSocket. Credentials are compared in constant time. Sans-I/O.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from collections.abc import Iterable

from evsim_trio.config import UiAuthentication, UiServerSection

__all__ = [
    "PROTOCOL_AUTH_PREFIX",
    "Authenticator",
    "UiConfigError",
    "check_ui_config",
    "is_loopback",
]

PROTOCOL_AUTH_PREFIX = "authorization.basic."


class UiConfigError(Exception):
    """The `[ui_server]` section cannot be served as configured (e.g. open without auth)."""


def is_loopback(host: str) -> bool:
    """True when `host` only reaches this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower() in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything


def check_ui_config(config: UiServerSection) -> None:
    """Refuse a configuration that would expose the UI without authentication.

    The UI starts and stops stations and changes their configuration: anyone who reaches it
    controls the fleet. Raises UiConfigError with a message saying what to change.
    """
    auth = config.authentication
    if not auth.enabled and not is_loopback(config.host):
        raise UiConfigError(
            f"ui_server.host: {config.host!r} is not a loopback address and "
            "ui_server.authentication is disabled; enable [ui_server.authentication] "
            '(type "basic-auth" or "protocol-basic-auth", with username and password) '
            'or bind to "127.0.0.1"'
        )
    if auth.enabled and (not auth.username or not auth.password):
        raise UiConfigError(
            "ui_server.authentication: username and password are required when enabled"
        )


def _b64decode(text: str) -> bytes | None:
    """Standard or URL-safe base64, with or without padding; None when it is not base64."""
    text = text.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class Authenticator:
    """Checks UI requests against `[ui_server.authentication]`."""

    def __init__(self, config: UiAuthentication) -> None:
        self.enabled = config.enabled
        self.type = config.type
        self._expected = f"{config.username}:{config.password}".encode()

    @property
    def protocol_mode(self) -> bool:
        """True for `protocol-basic-auth`: WebSocket clients authenticate by subprotocol."""
        return self.enabled and self.type == "protocol-basic-auth"

    def _matches(self, credentials: bytes | None) -> bool:
        # compare_digest: the time taken does not depend on where the bytes differ.
        return credentials is not None and hmac.compare_digest(credentials, self._expected)

    def check_header(self, authorization: str | None) -> bool:
        """True when access is open or `authorization` is `Basic <right credentials>`."""
        if not self.enabled:
            return True
        if authorization is None:
            return False
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "basic":
            return False
        return self._matches(_b64decode(token))

    def check_subprotocols(self, offered: Iterable[str]) -> bool:
        """True when one offered subprotocol is `authorization.basic.<right credentials>`."""
        ok = False
        for protocol in offered:
            if protocol.startswith(PROTOCOL_AUTH_PREFIX):
                ok |= self._matches(_b64decode(protocol[len(PROTOCOL_AUTH_PREFIX) :]))
        return ok

    def check_websocket(self, authorization: str | None, offered: Iterable[str]) -> bool:
        """A WebSocket handshake: the subprotocol in protocol mode, else the header."""
        if self.protocol_mode:
            return self.check_subprotocols(offered)
        return self.check_header(authorization)

    def page_needs_header(self) -> bool:
        """Whether the page and static files need the Authorization header.

        With `protocol-basic-auth` the page is served openly (it holds no data) and asks the
        user for credentials, which it sends as the subprotocol.
        """
        return self.enabled and self.type == "basic-auth"
