# -*- test-case-name: tests.http.test_parents -*-
"""
Parent proxies (C{--parent}): the HTTP proxy's requests may go to another
proxy rather than to the origin, as in a cache hierarchy, or through a
SOCKS5 server (L{netproxy.http.parent_connect} opens its tunnels).

Which parent a request goes to is decided by rendezvous hashing (highest
random weight, as Squid's CARP does): each parent's score for a URL is a
hash of the parent's name and the URL, and the highest score wins.  So
every instance that shares the parents sends a URL to the same parent,
each parent caches its own share of the URLs, and losing a parent moves
only its share: the other URLs keep their parent.  A CONNECT is placed by
its C{host:port} the same way.

A parent that fails (its connection refused, reset or timed out, or an
unreadable answer) is passed over, with the reverse proxy's back-off
(L{netproxy.backoff}), for the parents that are up: the URLs it had go to
their second choice meanwhile.  Down parents stay as the last resort,
soonest due first, so a request is never refused for a down mark alone.
A parent is up again as soon as it answers a request.

Destinations named by C{--direct} rules bypass the parents.  Through a
parent, the proxy does not resolve the origin's name: C{--block} rules
match the name as written (and every spelling of an address), and the
refusal of local destinations applies to addresses written in the URL and
to the names C{localhost} and C{*.localhost}; a name that leads to a
local address is the parent's to refuse.  The parent itself is allowed
wherever it is, loopback included, since the operator named it.
"""

import re
from base64 import b64encode
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from ipaddress import IPv6Address
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IProtocolFactory, IReactorTime
from twisted.python.failure import Failure

from netproxy.acl import host_address
from netproxy.backoff import FIRST_RETRY, MAX_RETRY, BackOff
from netproxy.dialing import check_destination, connect_error, connect_failure_reason, endpoint_for
from netproxy.errors import Blocked, HTTPError
from netproxy.escaping import Logger
from netproxy.http.message import Target

_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")
USAGE = "http://[user:password@]host:port or socks5://[user:password@]host:port"


class ParentRefused(HTTPError):
    """
    A parent's answer the proxy does not relay, though the parent is up: a
    407, which would ask the client for credentials that are the parent's
    and never forwarded.
    """


@dataclass(eq=False)
class Parent:
    """
    One parent proxy.

    :ivar host: its name or address (an IPv6 address without brackets).
    :ivar port: its port.
    :ivar authorization: the C{Proxy-Authorization} value it is sent
        (C{Basic ...}), or L{None} without credentials.
    :ivar state: its L{BackOff}.
    :ivar login: for a SOCKS5 parent, its C{(user, password)} (RFC 1929),
        or L{None}: then C{authorization} is L{None}.
    :ivar socks: whether it is a SOCKS5 server rather than an HTTP proxy:
        a tunnel to each origin, not a proxy.
    """

    host: str
    port: int
    authorization: bytes | None = field(default=None, repr=False)
    state: BackOff = field(default_factory=BackOff)
    login: tuple[bytes, bytes] | None = field(default=None, repr=False)
    socks: bool = False

    @property
    def name(self) -> str:
        """
        C{host:port}, IPv6 in brackets (C{socks5://host:port} for a SOCKS5
        parent): how logs and error pages name it (never with its
        credentials), and what its hash scores are made of.
        """
        name = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return "socks5://" + name if self.socks else name

    def pool_key(self, origin: tuple[str, int]) -> tuple[str, int]:
        """
        :returns: the pool key of its connections for a request to
            C{origin}: L{key} for an HTTP parent, which takes any request;
            one per origin for a SOCKS5 parent, whose connections are
            tunnels to one origin each.
        """
        return (f"{self.name} {origin[0]}", origin[1]) if self.socks else self.key

    @property
    def key(self) -> tuple[str, int]:
        """
        Its key in the pool of upstream connections: apart from an origin
        at the same address, since a connection to a parent carries
        requests in absolute form.
        """
        return (f"parent {self.host}", self.port)

    def refused(self, status: int, reason: bytes, what: str) -> ParentRefused:
        """
        :param what: the request refused, in words (C{"the request"},
            C{"CONNECT host:port"}).
        :returns: the 502 answering a parent's refusal of C{what} with
            C{status} and C{reason}.
        """
        hint = " (check the credentials of its --parent)" if status == 407 else ""
        return ParentRefused(502, f"parent proxy {self.name} refused {what}: {status} "
                                  f"{reason[:80].decode('latin-1')}{hint}")

    def score(self, key: bytes) -> int:
        """
        :returns: its rendezvous score for C{key} (a URL, or a CONNECT's
            C{host:port}): the highest score takes the request.
        """
        return int.from_bytes(blake2b(self.name.encode("ascii") + b"\n" + key, digest_size=8).digest(), "big")


def _credentials(userinfo: str, socks: bool = False) -> tuple[bytes, bytes]:
    user, colon, password = userinfo.partition(":")
    if not colon:
        raise ValueError(f"credentials must be user:password, percent-encoded, in {USAGE}")
    if _BAD_ESCAPE.search(userinfo):
        raise ValueError("a % in the credentials must start an escape such as %40 (for @)")
    user_bytes, password_bytes = unquote_to_bytes(user), unquote_to_bytes(password)
    for part in (user_bytes, password_bytes):
        try:
            part.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the credentials are not UTF-8 once percent-decoded") from None
        if _CONTROL.search(part):
            raise ValueError("the credentials contain control characters")
    if not user_bytes:
        raise ValueError("the user name is empty")
    if socks and not (len(user_bytes) < 256 and 0 < len(password_bytes) < 256):
        raise ValueError("a SOCKS5 user name and password have 1 to 255 bytes each (RFC 1929)")
    if b":" in user_bytes and not socks:
        raise ValueError("the user name must not contain ':' (RFC 7617)")
    return user_bytes, password_bytes


def parse_parent(text: str) -> Parent:
    """
    Read a C{--parent} value: C{http://[user:password@]host:port} or
    C{socks5://...} (C{socks5h://} alike: the parent resolves names either
    way), with an optional final C{/}; the user and password may be
    percent-encoded (C{@} as C{%40}, C{:} in the password as C{%3A}).

    :returns: the L{Parent}.
    :raises ValueError: saying what is wrong (never quoting the password).
    """
    scheme, separator, rest = text.strip().partition("://")
    if not separator:
        raise ValueError(f"expected {USAGE}, got {text!r}")
    socks = scheme.lower() in ("socks5", "socks5h")
    if scheme.lower() != "http" and not socks:
        raise ValueError(f"only http:// and socks5:// parents are supported, not {scheme[:20]}://")
    userinfo, at, authority = rest.rpartition("@")
    if authority.endswith("/"):
        authority = authority[:-1]
    if any(delimiter in authority for delimiter in "/?#") or any(delimiter in userinfo for delimiter in "/?#@"):
        raise ValueError(f"expected {USAGE} with no path (and @ in credentials as %40)")
    credentials = _credentials(userinfo, socks) if at else None
    host, colon, port_text = authority.rpartition(":")
    if not colon or not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
        raise ValueError(f"expected {USAGE} with a port from 1 to 65535, got {authority!r}")
    if host.startswith("[") and host.endswith("]"):
        try:
            host = str(IPv6Address(host[1:-1]))
        except ValueError:
            raise ValueError(f"bad IPv6 address {host!r}") from None
    elif not _NAME.fullmatch(host):
        raise ValueError(f"bad host {host!r} (IPv6 addresses go in brackets)")
    if socks:
        return Parent(host.lower().rstrip("."), int(port_text), login=credentials, socks=True)
    authorization = None if credentials is None else b"Basic " + b64encode(b":".join(credentials))
    return Parent(host.lower().rstrip("."), int(port_text), authorization)


class Parents:
    """
    The parent proxies, which of them are up, and which destinations go
    direct.

    :param parents: the L{Parent}s, at least one.
    :param direct: destinations that bypass them: anything with
        C{match(host, port)} (the C{--direct} rules).
    :param clock: provides C{seconds()}, for the back-off.
    """

    log = Logger()

    def __init__(self, parents: Sequence[Parent], direct: Any, clock: IReactorTime,
                 first_retry: float = FIRST_RETRY, max_retry: float = MAX_RETRY) -> None:
        if not parents:
            raise ValueError("no parent proxies")
        self.parents = list(parents)
        self.direct = direct
        self._clock = clock
        self._first_retry = first_retry
        self._max_retry = max_retry

    def goes_direct(self, host: str, port: int) -> bool:
        """
        :returns: whether a request for C{host:port} bypasses the parents.
        """
        return self.direct.match(host, port) is not None

    def ranked(self, key: bytes) -> list[Parent]:
        """
        :returns: every parent, best first for C{key} (rendezvous order),
            whether up or down.
        """
        return sorted(self.parents, key=lambda parent: parent.score(key), reverse=True)

    def candidates(self, key: bytes) -> list[Parent]:
        """
        :returns: the parents to try for C{key}, one after another: those
            up in rendezvous order, then those down, soonest due first.
        """
        if len(self.parents) == 1:
            return self.parents
        now = self._clock.seconds()
        ranked = self.ranked(key)
        up = [parent for parent in ranked if parent.state.available(now)]
        down = sorted((parent for parent in ranked if not parent.state.available(now)),
                      key=lambda parent: parent.state.retry_at or 0.0)
        return up + down

    def failed(self, parent: Parent, reason: str) -> None:
        """
        C{parent} failed (with C{reason}, in words): pass it over for a while.

        Logged when the parent was due, not when it was tried again as a
        last resort during its wait: with every parent down, each request
        tries each, and the log gets a line per parent per wait, not per
        request.
        """
        now = self._clock.seconds()
        due = parent.state.available(now)
        wait = parent.state.failed(now, self._first_retry, self._max_retry)
        if due:
            self.log.error("parent proxy {parent} failed ({reason}): passed over for {wait:g} seconds",
                           parent=parent.name, reason=reason, wait=wait)

    def answered(self, parent: Parent) -> None:
        """
        C{parent} answered a request: it is up.
        """
        if parent.state.answered():
            self.log.info("parent proxy {parent} answers again", parent=parent.name)


def refusal(rules: Any, local: Any, target: Target) -> HTTPError | None:
    """
    Check a destination reached through a parent, which the proxy does not
    resolve: an address written in the URL (in any spelling) against
    C{rules} and C{local}, the names C{localhost} and C{*.localhost}
    against C{local}.  (The exchange has matched the name with the rules.)

    :param rules: anything with C{match(host, port)}.
    :param local: the L{netproxy.this_host.LocalDestinations}, or L{None}.
    :returns: the L{HTTPError} to answer, or L{None} to go ahead.
    """
    host = target.host.decode("ascii")
    authority = target.authority.decode("ascii")
    address = host_address(host)
    if address is not None:
        try:
            check_destination(rules, local, address, target.port)
        except Blocked:
            return connect_error(Failure(), authority)
        return None
    name = host.rstrip(".")
    if local is not None and (name == "localhost" or name.endswith(".localhost")):
        return HTTPError(403, f"destination {authority} is this host: {name} is a loopback name "
                              "(--allow-local allows it)")
    return None


def absolute_form(request: bytes, target: Target, parent: Parent) -> bytes:
    """
    Rewrite a request head made for an origin (origin-form, as
    L{netproxy.http.message.request_head_bytes} writes it) for C{parent}:
    the request line names the whole URL, and the parent's credentials
    follow it.
    """
    method, _, rest = request.partition(b" ")
    path, _, rest = rest.partition(b" ")
    # OPTIONS * for the origin is OPTIONS http://authority for a proxy
    # (RFC 9112 section 3.2.4).
    url = b"http://" + target.authority + (b"" if path == b"*" else path)
    line_end = rest.find(b"\r\n")
    credentials = b"" if parent.authorization is None else b"\r\nProxy-Authorization: " + parent.authorization
    return b"%s %s %s%s%s" % (method, url, rest[:line_end], credentials, rest[line_end:])


def url_key(target: Target) -> bytes:
    """
    :returns: what places a request among the parents: its URL, or a
        CONNECT's C{host:port}.
    """
    if not target.scheme:
        return target.authority
    return b"http://" + target.authority + target.path
