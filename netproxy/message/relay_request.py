# -*- test-case-name: tests.message.test_relay_request -*-
"""
What a relay request says, checked: the destination and the message text.

Kept apart from the protocol so every malformed-request case is a plain
function call in the tests.
"""

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from netproxy.errors import BadRequest

# Labels are joined by mandatory dots, so a name can be split into labels in
# only one way and a near-miss fails in linear time (an optional dot inside a
# repeated group made the old pattern backtrack exponentially).
_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\.?")


@dataclass(frozen=True)
class RelayRequest:
    """
    A valid relay request.

    :ivar host: the destination, an IP address (IPv6 without brackets or
        zone) or a host name.
    :ivar port: the destination port, 1 to 65535.
    :ivar payload: the UTF-8 bytes of the message text, the only thing sent on.
    """

    host: str
    port: int
    payload: bytes

    @property
    def destination(self) -> str:
        """
        C{host:port}, with brackets around an IPv6 address.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_relay_request(message: dict[str, Any]) -> RelayRequest:
    """
    Check a decoded relay request.

    C{server_port} may be a number or a string of digits, since peers in the
    wild send either.

    :param message: the decoded JSON object.
    :returns: a L{RelayRequest}.
    :raises BadRequest: naming the missing or wrong field.
    """
    for field in ("server_ip", "server_port", "message"):
        if field not in message:
            raise BadRequest(f"missing field '{field}'")
    return RelayRequest(
        host=_host(message["server_ip"]),
        port=_port(message["server_port"]),
        payload=_text(message["message"]),
    )


def _host(value: object) -> str:
    # An IPv4 or IPv6 address (IPv6 with or without brackets, as URLs write
    # it), or a host name; never a zone, which names one of this host's
    # interfaces rather than a destination, and which the HTTP proxy and the
    # rules refuse too.
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(f"server_ip must be an address, got {value!r}")
    host = value.strip()
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    if "%" in host:
        raise BadRequest(f"server_ip must be an address without a zone (%eth0), got {value!r}")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if _HOSTNAME.fullmatch(host) and not bracketed:
            return host.rstrip(".").lower()
    else:
        if address.version == 6 and address.ipv4_mapped is not None:
            # As Python 3.13 and later write it, whichever Python runs.
            return f"::ffff:{address.ipv4_mapped}"
        if address.version == 6 or not bracketed:
            return str(address)
    raise BadRequest(f"server_ip must be an address, got {value!r}")


def _port(value: object) -> int:
    if isinstance(value, bool):
        port = None
    elif isinstance(value, int):
        port = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        # isdigit() alone admits digits int() refuses ("²"), and int() refuses
        # digit strings longer than 4300 characters, which fit in a message.
        digits = value.strip().lstrip("0")
        port = int(digits or "0") if len(digits) <= 5 else None
    else:
        port = None
    if port is None or not 1 <= port <= 65535:
        raise BadRequest(f"server_port must be a port from 1 to 65535, got {value!r}")
    return port


def _text(value: object) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"message must be a string, got {type(value).__name__}")
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        # JSON can carry a lone surrogate ("\ud800"), which has no UTF-8 form.
        raise BadRequest("message is not valid Unicode text") from None
