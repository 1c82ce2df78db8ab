"""The metrics address: ``HOST:PORT``, ``:PORT`` or ``PORT`` (then on 127.0.0.1).

Without a host the endpoint binds the loopback interface, so turning metrics on never opens a
port on a public interface by accident; a container or pod says ``0.0.0.0:9464`` explicitly.
Port 0 picks a free port (the endpoint logs the one it got).
"""

from __future__ import annotations

from orchestrator.errors import OrchestratorError

DEFAULT_HOST = "127.0.0.1"
"""Where the endpoint listens when the address names only a port."""

DEFAULT_PORT = 9464
"""The port the deployment files use (Prometheus' registry of default ports lists 9464 for
exporters of this kind)."""


def parse_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of a metrics address; ``ValueError`` naming what is wrong."""
    value = text.strip()
    host, sep, port_text = value.rpartition(":")
    if not sep:
        host, port_text = "", value
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # [::1]:9464
    elif ":" in host:
        raise ValueError(f"metrics address {text!r}: put an IPv6 host in brackets, "
                         "e.g. [::1]:9464")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"metrics address {text!r}: expected HOST:PORT, :PORT or PORT with "
                         "a port from 0 to 65535")
    return host or DEFAULT_HOST, int(port_text)


class EndpointError(OrchestratorError):
    """The endpoint cannot listen on its address (in use, not an address of this host)."""


def endpoint_error(group: BaseExceptionGroup[BaseException]) -> EndpointError | None:
    """The :class:`EndpointError` inside a (nested) exception group, if there is one."""
    for exc in group.exceptions:
        if isinstance(exc, EndpointError):
            return exc
        if isinstance(exc, BaseExceptionGroup) and (found := endpoint_error(exc)):
            return found
    return None
