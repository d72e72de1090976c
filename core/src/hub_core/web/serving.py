"""What `hub serve` needs around uvicorn: the socket, the address it prints, a quiet log."""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

from hub_core.errors import ConfigurationError
from hub_core.web.security import is_loopback

__all__ = ["TokenFilter", "address", "is_loopback", "listen", "log_config", "redact_tokens"]

# A query parameter holding a token, and the token part of an auth-link path (/l/<token>).
_TOKEN_QUERY = re.compile(r"([?&]token=)[^&#\s]*", re.IGNORECASE)
_LINK_PATH = re.compile(r"(/l/)[^/?#\s]+")


def redact_tokens(path: str) -> str:
    """*path* with every sign-in or link token replaced by ``…``."""
    return _LINK_PATH.sub(r"\1…", _TOKEN_QUERY.sub(r"\1…", path))


class TokenFilter(logging.Filter):
    """Hides tokens in uvicorn's access log lines (its third argument is the full path)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_tokens(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with `TokenFilter` on every handler."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = {**LOGGING_CONFIG}
    config["filters"] = {"tokens": {"()": TokenFilter}}
    handlers = LOGGING_CONFIG["handlers"]
    config["handlers"] = {name: {**spec, "filters": ["tokens"]} for name, spec in handlers.items()}
    return config


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on *host*:*port* (0: any free port), IPv4 or IPv6."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        raise ConfigurationError(
            "--host", f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from exc


def address(sock: socket.socket, host: str, *, tls: bool) -> str:
    """The address a person opens for a server on *sock* (bound to *host*)."""
    port = sock.getsockname()[1]
    shown = socket.getfqdn() if host in ("0.0.0.0", "::") else host  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{'https' if tls else 'http'}://{shown}:{port}/"
