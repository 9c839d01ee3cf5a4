# -*- test-case-name: tests.http.test_message -*-
"""
What a forward proxy does to an HTTP/1.1 message between parsing and sending:
read the request target, decide whether a connection persists, rewrite the
header list for the next hop, spot forwarding loops, and serialise heads and
the proxy's own error pages.

Everything here is a pure function of bytes and runs once or more per request,
so each function makes one pass over the header list, lower-cases each field
name once and looks it up in precomputed frozensets.  Header lists are
C{list[tuple[bytes, bytes]]}: names as received, values with surrounding
whitespace already stripped by the head parser (which also refused CR, LF and
NUL in them, so serialising needs no further checks).
"""

import html
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from http import HTTPStatus

from netproxy.errors import HTTPError

# RFC 9110 section 7.6.1 plus the fields that only ever describe one hop:
# Proxy-Connection is a pre-standard Connection, and Proxy-Authorization holds
# the credentials the client gave us, which must never reach an origin.
HOP_BY_HOP = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"proxy-authorization"}
    | {b"te", b"trailer", b"transfer-encoding", b"upgrade"}
)
PSEUDONYM = b"netproxy"

# Connection tokens that name no field, or name a field a connection option
# must not remove.  Letting "Connection: content-length" strip the length
# from a message whose body we still forward would change its framing on the
# next hop, which is how request smuggling starts.
_NOT_FIELDS = HOP_BY_HOP | {b"close", b"content-length"}
# Fields forward_headers looks at for a request; everything else is copied.
_REQUEST_SPECIAL = HOP_BY_HOP | {b"host"}

_VIA = {(1, 1): b"1.1 " + PSEUDONYM, (1, 0): b"1.0 " + PSEUDONYM}

# Bytes never valid in a request target: controls, space, DEL, non-ASCII, and
# "#" since a fragment is for the user agent and must not be sent.
_BAD_TARGET_BYTE = re.compile(rb"[\x00-\x20\x7f-\xff#]")
# RFC 3986 reg-name without pct-encoded (an IPv4 address matches it too).
_REG_NAME = re.compile(rb"[A-Za-z0-9\-._~!$&'()*+,;=]+")
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*")
# Via comments may contain commas and spaces; they say nothing about loops.
_COMMENT = re.compile(rb"\([^()]*\)")


@dataclass(frozen=True, slots=True)
class Target:
    """
    Where a proxy request goes, read from its request target.

    :ivar scheme: C{b"http"} for absolute-form, C{b""} for CONNECT.
    :ivar host: the host, lower-cased; an IPv6 address without brackets.
    :ivar port: the port number.
    :ivar path: the origin-form target to send upstream (C{b"/"} when the URL
        has no path, C{b"*"} for OPTIONS to a bare authority), C{b""} for
        CONNECT.
    :ivar authority: C{host[:port]} as the Host field shows it: IPv6 in
        brackets, the port left out when it is 80 (always present for
        CONNECT, whose authority-form requires it).
    """

    scheme: bytes
    host: bytes
    port: int
    path: bytes
    authority: bytes


def _show(target: bytes) -> str:
    # Error texts quote client input; keep it short and printable.  The page
    # HTML-escapes it.
    text = target[:80].decode("ascii", "backslashreplace")
    return text + "..." if len(target) > 80 else text


@lru_cache(maxsize=1024)
def _split_authority(authority: bytes, default_port: int | None) -> tuple[bytes, int, bool]:
    # Returns the lower-cased host (IPv6 unbracketed), the port (default_port
    # when none is given; None means one is required) and whether it is IPv6.
    # Remembered for recent authorities: a proxy sees the same few again and
    # again.
    if b"@" in authority:
        raise HTTPError(400, "user information (user@) is not allowed in a proxy request")
    if b"%" in authority:
        raise HTTPError(400, "percent-encoding is not allowed in the host")
    if authority[:1] == b"[":
        end = authority.find(b"]")
        if end < 0:
            raise HTTPError(400, f"unterminated IPv6 address in {_show(authority)}")
        host = authority[1:end].lower()
        try:
            ipaddress.IPv6Address(host.decode("ascii"))
        except ValueError:
            raise HTTPError(400, f"bad IPv6 address in {_show(authority)}") from None
        rest = authority[end + 1 :]
        if rest and rest[:1] != b":":
            raise HTTPError(400, f"bad authority {_show(authority)}")
        port_text = rest[1:]
        ipv6 = True
    else:
        host, _, port_text = authority.partition(b":")
        if not host:
            raise HTTPError(400, "the request target has an empty host")
        if b":" in port_text:
            raise HTTPError(400, f"IPv6 addresses must be in brackets: {_show(authority)}")
        if _REG_NAME.fullmatch(host) is None:
            raise HTTPError(400, f"bad host in {_show(authority)}")
        host = host.lower()
        ipv6 = False
    if not port_text:
        # RFC 3986 allows "host:" to mean the default port.
        if default_port is None:
            raise HTTPError(400, f"a port is required: {_show(authority)}")
        return host, default_port, ipv6
    # Five digits at most also keeps int() away from huge digit strings.
    if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise HTTPError(400, f"bad port in {_show(authority)}")
    return host, int(port_text), ipv6


def parse_target(method: bytes, target: bytes) -> Target:
    """
    Read the request target of a request sent to a proxy.

    Absolute-form C{http://host[:port][/path][?query]} (scheme and host in any
    case) for every method but CONNECT, authority-form C{host:port} for
    CONNECT.

    :param method: the request method, case-sensitive.
    :param target: the request target as received.
    :returns: the L{Target}.
    :raises HTTPError: 400 for a malformed target, an https or other non-http
        URL, userinfo, a fragment, a bad host or port, or a target in
        origin-form or asterisk-form (not a proxy request).
    """
    bad = _BAD_TARGET_BYTE.search(target)
    if bad is not None:
        if bad.group() == b"#":
            raise HTTPError(400, "a fragment (#) is not allowed in the request target")
        raise HTTPError(400, f"invalid character in the request target {_show(target)}")
    if method == b"CONNECT":
        if b"/" in target or b"?" in target:
            raise HTTPError(400, f"CONNECT needs host:port, got {_show(target)}")
        host, port, ipv6 = _split_authority(target, None)
        authority = b"[%s]:%d" % (host, port) if ipv6 else b"%s:%d" % (host, port)
        return Target(b"", host, port, b"", authority)

    if target[:7].lower() != b"http://":
        if target[:1] == b"/" or target == b"*":
            raise HTTPError(400, f"not a proxy request: {_show(target)}")
        scheme, colon, _ = target.partition(b":")
        if colon and _SCHEME.fullmatch(scheme):
            scheme = scheme.lower()
            if scheme == b"https":
                raise HTTPError(400, "https URLs go through CONNECT")
            if scheme != b"http":
                raise HTTPError(400, f"unsupported URL scheme {_show(scheme)}")
        raise HTTPError(400, f"malformed request target {_show(target)}")

    rest = target[7:]
    # The authority ends at the first "/" or "?" ("#" was refused above).
    end = len(rest)
    for delimiter in (b"/", b"?"):
        found = rest.find(delimiter, 0, end)
        if found >= 0:
            end = found
    host, port, ipv6 = _split_authority(rest[:end], 80)
    path = rest[end:]
    if not path:
        # RFC 9112 section 3.2.4: OPTIONS to a bare authority is forwarded as
        # asterisk-form, asking about the server rather than a resource.
        path = b"*" if method == b"OPTIONS" else b"/"
    elif path[:1] == b"?":
        path = b"/" + path
    authority = b"[" + host + b"]" if ipv6 else host
    if port != 80:
        authority += b":%d" % (port,)
    return Target(b"http", host, port, path, authority)


def keep_alive(version: tuple[int, int], headers: list[tuple[bytes, bytes]]) -> bool:
    """
    Decide whether the connection persists after this message (RFC 9112
    section 9.3).

    The non-standard Proxy-Connection field, still sent by some clients to
    proxies, counts as a Connection field.

    :param version: the message's HTTP version, such as C{(1, 1)}.
    :param headers: the message's fields.
    :returns: C{True} for HTTP/1.1 and later unless an option is C{close};
        for HTTP/1.0 only with a C{keep-alive} option and no C{close}.
    """
    close = persist = False
    for name, value in headers:
        if len(name) in (10, 16) and name.lower() in (b"connection", b"proxy-connection"):
            for token in value.split(b","):
                token = token.strip(b" \t").lower()
                if token == b"close":
                    close = True
                elif token == b"keep-alive":
                    persist = True
    if close:
        return False
    if version >= (1, 1):
        return True
    return persist and version == (1, 0)


def forward_headers(
    headers: list[tuple[bytes, bytes]], target: Target | None = None, via_version: tuple[int, int] = (1, 1),
    pseudonym: bytes = PSEUDONYM,
) -> list[tuple[bytes, bytes]]:
    """
    Rewrite a message's fields for the next hop (RFC 9110 section 7.6).

    Hop-by-hop fields and the fields named by Connection options go (except
    Content-Length, which the body's framing depends on); the others keep
    their order, duplicates included.  A request gets exactly one Host, first,
    from the target, since the absolute-form wins over the client's Host
    (RFC 9112 section 3.2.2).  Our Via element is appended as a new field line
    after any the message carries.

    :param headers: the fields as received.
    :param target: the request's L{Target}, or L{None} for a response.
    :param via_version: the HTTP version the message was received with.
    :param pseudonym: the received-by of our Via element.
    :returns: a new list of fields.
    """
    if target is None:
        special = HOP_BY_HOP
        out = []
    else:
        special = _REQUEST_SPECIAL
        out = [(b"Host", target.authority)]
    named = None
    for field in headers:
        name = field[0].lower()
        if name in special:
            if name == b"connection":
                for token in field[1].lower().split(b","):
                    token = token.strip(b" \t")
                    if token not in _NOT_FIELDS:
                        if named is None:
                            named = set()
                        named.add(token)
        else:
            out.append(field)
    if named:
        # Rare: only when a client names a field of its own in Connection.
        out = [field for field in out if field[0].lower() not in named]
        if target is not None and b"host" in named:
            out.insert(0, (b"Host", target.authority))
    via = _VIA.get(via_version) if pseudonym is PSEUDONYM else None
    if via is None:
        via = b"%d.%d %s" % (via_version[0], via_version[1], pseudonym)
    out.append((b"Via", via))
    return out


def is_loop(headers: list[tuple[bytes, bytes]], pseudonym: bytes = PSEUDONYM, any_netproxy: bool = False) -> bool:
    """
    Tell whether a message already passed through this proxy: a Via element
    whose received-by is our C{pseudonym} (L{PSEUDONYM} by default), in any
    case.

    :param headers: the message's fields.
    :param any_netproxy: count too the names any netproxy gives itself by
        default (C{netproxy}, C{netproxy-...}): a request for the proxy's own
        pages may come through no netproxy, whatever its name.
    :returns: C{True} for a loop.
    """
    pseudonym = pseudonym.lower()
    for name, value in headers:
        if len(name) != 3 or name.lower() != b"via":
            continue
        value = value.lower()
        if pseudonym not in value and not (any_netproxy and PSEUDONYM in value):
            continue
        if b"(" in value:
            value = _COMMENT.sub(b"", value)
        for element in value.split(b","):
            # received-protocol RWS received-by [ RWS comment ]
            words = element.split()
            if len(words) < 2:
                continue
            received_by = words[1]
            if received_by == pseudonym or (any_netproxy and (received_by == PSEUDONYM or
                                                              received_by.startswith(PSEUDONYM + b"-"))):
                return True
    return False


def _head(first_line: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    # Joining once with CRLF is the cheapest way CPython has to build a head.
    lines = [first_line]
    lines += map(b": ".join, headers)
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def request_head_bytes(method: bytes, path: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """
    Serialise a request head for an origin server, always as HTTP/1.1.

    :returns: the request line, the field lines and the empty line.
    """
    return _head(method + b" " + path + b" HTTP/1.1", headers)


def response_head_bytes(
    status: int, reason: bytes, headers: list[tuple[bytes, bytes]], version: tuple[int, int] = (1, 1)
) -> bytes:
    """
    Serialise a response head.

    :param reason: the reason phrase, possibly empty (the space before it
        stays, as RFC 9112 section 4 requires).
    :returns: the status line, the field lines and the empty line.
    """
    return _head(b"HTTP/%d.%d %d %s" % (version[0], version[1], status, reason), headers)


def error_response(
    status: int, message: str, close: bool = True, extra_headers: Sequence[tuple[bytes, bytes]] = ()
) -> bytes:
    """
    Build a complete error response: a short HTML page naming the cause.

    :param status: the status code, such as 400 or 502.
    :param message: the cause in words; it may quote client input, so it is
        HTML-escaped.
    :param close: whether to announce C{Connection: close}.
    :param extra_headers: more fields, such as Proxy-Authenticate for 407,
        placed after the standard ones.
    :returns: the response head and body.
    """
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = ""
    title = html.escape(f"{status} {reason}".rstrip())
    body = (
        f"<html><head><title>{title}</title></head><body><h1>{title}</h1>"
        f"<p>{html.escape(message)}</p></body></html>"
    ).encode("utf-8", "backslashreplace")
    headers = [
        (b"Content-Type", b"text/html; charset=utf-8"),
        (b"Content-Length", b"%d" % (len(body),)),
    ]
    if close:
        headers.append((b"Connection", b"close"))
    headers.extend(extra_headers)
    return response_head_bytes(status, reason.encode("ascii"), headers) + body


def no_delay(transport: object) -> None:
    """
    Send what C{transport} is given at once (no Nagle delay, where it is a
    TCP transport): the last segment of a response would otherwise wait for
    the peer's delayed ACK, up to 40 ms per response on Linux.
    """
    set_no_delay = getattr(transport, "setTcpNoDelay", None)
    if set_no_delay is not None:
        try:
            set_no_delay(True)
        except OSError:
            pass
