# -*- test-case-name: tests.socks.test_negotiation -*-
"""
The SOCKS5 negotiation as bytes: the client's greeting and request (RFC
1928), its username/password login (RFC 1929), and the server's replies.

Each reader takes the bytes received so far and returns what they hold
once it is complete, with how many bytes it took, or L{None} while more are
needed; every message has a bounded size (a greeting at most 257 bytes, a
login 513, a request 262), so nothing read here grows without bound.  A
message that breaks the protocol raises L{NegotiationError}, carrying the
reply the server sends before closing, if any.
"""

import re
import struct
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address

# The wire's numbers, shared with the SOCKS client; the SOCKS role names them
# as this module's (negotiation.CONNECT), hence each is exported again here.
from netproxy.socks_codes import (
    ADDRESS_TYPE_NOT_SUPPORTED as ADDRESS_TYPE_NOT_SUPPORTED,
    BIND as BIND,
    COMMAND_NAMES as COMMAND_NAMES,
    COMMAND_NOT_SUPPORTED as COMMAND_NOT_SUPPORTED,
    CONNECT as CONNECT,
    CONNECTION_REFUSED as CONNECTION_REFUSED,
    DOMAIN_NAME as DOMAIN_NAME,
    GENERAL_FAILURE as GENERAL_FAILURE,
    HOST_UNREACHABLE as HOST_UNREACHABLE,
    IPV4 as IPV4,
    IPV6 as IPV6,
    LOGIN_VERSION as LOGIN_VERSION,
    NETWORK_UNREACHABLE as NETWORK_UNREACHABLE,
    NOT_ALLOWED as NOT_ALLOWED,
    NO_ACCEPTABLE_METHODS as NO_ACCEPTABLE_METHODS,
    NO_AUTHENTICATION as NO_AUTHENTICATION,
    SUCCEEDED as SUCCEEDED,
    TTL_EXPIRED as TTL_EXPIRED,
    UDP_ASSOCIATE as UDP_ASSOCIATE,
    USERNAME_PASSWORD as USERNAME_PASSWORD,
    VERSION as VERSION,
)

# What a name may hold: letters, digits, hyphens, underscores and dots (a
# name as resolvers take it), so that no control byte reaches a log or the
# resolver.
_NAME = re.compile(rb"[A-Za-z0-9_.-]+")


class NegotiationError(Exception):
    """
    The client broke the protocol; the message says how, for the log.

    :ivar reply: the request reply code to answer with before closing, or
        L{None} when no reply fits (the connection is closed at once, or
        the caller answers as its step requires).
    """

    def __init__(self, reason: str, reply: int | None = None) -> None:
        super().__init__(reason)
        self.reply = reply


@dataclass(frozen=True)
class Request:
    """
    A client's request: what to do, and where.

    :ivar command: L{CONNECT}, L{BIND} or L{UDP_ASSOCIATE}.
    :ivar host: the destination as the client named it: an IPv4 or IPv6
        address in its usual text, or a name (lower case).
    :ivar port: the destination port.
    :ivar address_type: L{IPV4}, L{DOMAIN_NAME} or L{IPV6}.
    """

    command: int
    host: str
    port: int
    address_type: int

    @property
    def destination(self) -> str:
        """
        C{host:port}, an IPv6 address in brackets, for logs.
        """
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _check_version(data: bytes, expected: int, what: str) -> None:
    if data and data[0] != expected:
        raise NegotiationError(f"{what} of version {data[0]}, not {expected}")


def read_greeting(data: bytes) -> tuple[frozenset[int], int] | None:
    """
    Read a greeting: version 5 and the authentication methods the client
    offers.

    :param data: the bytes received so far.
    :returns: C{(methods, size)}, or L{None} while incomplete; no method
        offered is an empty set (none is acceptable).
    :raises NegotiationError: for another version (a SOCKS4 client, or not
        SOCKS at all), which has no reply.
    """
    _check_version(data, VERSION, "greeting")
    if len(data) < 2:
        return None
    count = data[1]
    if len(data) < 2 + count:
        return None
    return frozenset(data[2:2 + count]), 2 + count


def read_login(data: bytes) -> tuple[bytes, bytes, int] | None:
    """
    Read a username/password login (RFC 1929).

    :param data: the bytes received so far.
    :returns: C{(user, password, size)}, or L{None} while incomplete.
    :raises NegotiationError: for another sub-negotiation version, or an
        empty user name.
    """
    _check_version(data, LOGIN_VERSION, "login")
    if len(data) < 2:
        return None
    user_end = 2 + data[1]
    if len(data) < user_end + 1:
        return None
    password_end = user_end + 1 + data[user_end]
    if len(data) < password_end:
        return None
    if user_end == 2:
        raise NegotiationError("login with an empty user name")
    return data[2:user_end], data[user_end + 1:password_end], password_end


def read_request(data: bytes) -> tuple[Request, int] | None:
    """
    Read a request.

    :param data: the bytes received so far.
    :returns: C{(request, size)}, or L{None} while incomplete.
    :raises NegotiationError: for another version (no reply), an unknown
        address type (reply 8), a reserved byte that is not zero, or a name
        or port no destination has (reply 1).  An unknown command is not an
        error here: the caller refuses what it does not serve with reply 7.
    """
    _check_version(data, VERSION, "request")
    if len(data) < 4:
        return None
    command, reserved = data[1], data[2]
    if reserved != 0:
        raise NegotiationError(f"request with reserved byte {reserved}, not 0", GENERAL_FAILURE)
    read = read_address(data, 3)
    if read is None:
        return None
    host, port, address_type, end = read
    if port == 0 and command == CONNECT:
        raise NegotiationError("request for port 0", GENERAL_FAILURE)
    return Request(command, host, port, address_type), end


def read_address(data: bytes, offset: int) -> tuple[str, int, int, int] | None:
    """
    Read an address and port (C{ATYP DST.ADDR DST.PORT}), as requests and
    UDP datagrams carry them.

    :param data: the bytes received so far.
    :param offset: where the address type is.
    :returns: C{(host, port, address type, end)}, C{end} the offset past
        the port, or L{None} while incomplete.
    :raises NegotiationError: for an unknown address type (reply 8), or a
        name no host has (reply 1).
    """
    if len(data) < offset + 2:
        return None
    address_type = data[offset]
    start = offset + 1
    host: str
    if address_type == IPV4:
        end = start + 4
        if len(data) < end + 2:
            return None
        host = str(IPv4Address(data[start:end]))
    elif address_type == IPV6:
        end = start + 16
        if len(data) < end + 2:
            return None
        host = str(IPv6Address(data[start:end]))
    elif address_type == DOMAIN_NAME:
        end = start + 1 + data[start]
        if len(data) < end + 2:
            return None
        name = data[start + 1:end]
        if not _NAME.fullmatch(name) or name.strip(b".") == b"" or b".." in name:
            raise NegotiationError(f"a malformed host name ({len(name)} bytes)", GENERAL_FAILURE)
        host = name.decode("ascii").lower()
    else:
        raise NegotiationError(f"unknown address type {address_type}", ADDRESS_TYPE_NOT_SUPPORTED)
    (port,) = struct.unpack("!H", data[end:end + 2])
    return host, port, address_type, end + 2


def method_reply(method: int) -> bytes:
    """
    :returns: the server's choice of authentication method.
    """
    return bytes((VERSION, method))


def login_reply(accepted: bool) -> bytes:
    """
    :returns: the answer to a login: status 0 when accepted, 1 otherwise.
    """
    return bytes((LOGIN_VERSION, 0 if accepted else 1))


def reply(code: int, host: str | None = None, port: int = 0) -> bytes:
    """
    A reply to a request.

    :param code: the reply code (L{SUCCEEDED}, L{NOT_ALLOWED}, ...).
    :param host: the address the server connected from (the bound
        address), an IPv4 or IPv6 address; L{None} for 0.0.0.0.
    :param port: the bound port.
    :returns: the reply's bytes.
    """
    address = ip_address((host or "0.0.0.0").partition("%")[0])
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    address_type = IPV4 if address.version == 4 else IPV6
    return bytes((VERSION, code, 0, address_type)) + address.packed + struct.pack("!H", port)
