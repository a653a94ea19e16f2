"""OpenAI-compatible API server for a run: `lapidar serve RUN` (see app.py for the endpoints)."""

from __future__ import annotations

import ipaddress

from lapidar.errors import UserError

__all__ = ["check_bind", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def check_bind(host: str, port: int, api_key: str | None) -> None:
    """Refuse settings that would expose an unprotected server or cannot work."""
    if not 0 < port < 65536:
        raise UserError(f"--port {port}: expected a port number between 1 and 65535")
    if not is_loopback(host) and not api_key:
        raise UserError(
            f"--host {host} makes the server reachable from other machines; set --api-key KEY (or the "
            "LAPIDAR_API_KEY environment variable) so that only clients sending `Authorization: Bearer KEY` "
            "get answers, or keep the default --host 127.0.0.1"
        )
