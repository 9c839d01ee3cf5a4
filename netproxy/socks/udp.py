# -*- test-case-name: tests.socks.test_udp -*-
"""
UDP ASSOCIATE (RFC 1928 section 7): a UDP relay for one client, open as
long as the client's control connection is.

The relay listens on a port of its own, on the address the control
connection came to.  A datagram from the client carries a header naming
its destination (C{RSV RSV FRAG ATYP DST.ADDR DST.PORT}); the relay checks
the destination as a CONNECT's is checked (C{--block} rules on the name and
on the address, this host's addresses refused unless C{--allow-local}),
strips the header and sends the payload on.  A datagram from a destination
the client has sent to comes back to the client with a header naming its
source.  Everything else is dropped, silently as UDP does, and counted:

    - datagrams from anyone but the client: its control connection's
      address, and the port it announced in its request (or, when it
      announced none, the port its first datagram came from), so that the
      relay serves no one else;
    - fragments (FRAG not 0: RFC 1928 lets a server drop them, as most do);
    - malformed headers, refused destinations, and destinations of the
      other address family than the relay's port;
    - replies from addresses the client never sent to.

Nothing is queued: a datagram is sent at once or dropped.  Names are looked
up for each datagram, in both families (L{netproxy.resolving}), at most
L{MAX_LOOKUPS} at a time per association; past that, datagrams for names
are dropped.  A datagram goes to the first of the name's addresses that
passes the checks and is of the relay's family.
"""

import ipaddress
import struct
from collections import OrderedDict
from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.error import CannotListenError, DNSLookupError
from twisted.internet.protocol import DatagramProtocol
from twisted.python.failure import Failure

from netproxy.acl import host_address
from netproxy.connections import format_address
from netproxy.dialing import check_destination, checked_addresses
from netproxy.errors import Blocked
from netproxy.escaping import Logger
from netproxy.socks import negotiation
from netproxy.socks.connect import Client
from netproxy.socks.negotiation import NegotiationError, Request, read_address
from netproxy.resolving import resolve_addresses

#: Lookups of names under way at once, per association.
MAX_LOOKUPS = 16
#: Destinations remembered per association, whose replies are let back.
MAX_PEERS = 256

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def read_datagram(data: bytes) -> tuple[str, int, int, bytes]:
    """
    Read a client's datagram.

    :returns: C{(host, port, address type, payload)}.
    :raises NegotiationError: for a header too short or malformed, or a
        fragment.
    """
    if len(data) < 4:
        raise NegotiationError("datagram shorter than its header")
    if data[2] != 0:
        raise NegotiationError(f"fragment {data[2]} (fragments are not relayed)")
    read = read_address(data, 3)
    if read is None:
        raise NegotiationError("datagram shorter than its header")
    host, port, address_type, end = read
    return host, port, address_type, data[end:]


def datagram_header(host: str, port: int) -> bytes:
    """
    :returns: the header of a datagram to the client from C{host:port}.
    """
    return b"\x00\x00\x00" + negotiation.reply(0, host, port)[3:]


class UDPAssociation(DatagramProtocol):
    """
    The relay of one association.

    :param client: the control connection.
    :param request: its UDP ASSOCIATE request, whose port (unless 0) is the
        one the client will send from.
    :ivar dropped: datagrams dropped, by kind of reason (a fixed text).
    """

    log = Logger()
    noisy = False
    transport: Any

    def __init__(self, client: Client, request: Request) -> None:
        self.client_connection = client
        self.factory = client.factory
        peer = client.transport.getPeer()
        self.peer = format_address(peer)
        self.client: Address | None = None
        try:
            self.client = _plain(ipaddress.ip_address(peer.host.partition("%")[0]))
        except (AttributeError, ValueError):
            pass  # a unix client: no datagram can come from it
        self.client_port = request.port or None
        self.dropped: dict[str, int] = {}
        self._peers: OrderedDict[tuple[Address, int], None] = OrderedDict()
        self._lookups = 0
        self._closed = False
        self._port: Any = None

    def open(self) -> None:
        """
        Listen on a port of the address the client reached the proxy at,
        and tell the client where.
        """
        try:
            host = self.client_connection.transport.getHost().host
            self._port = self.factory.reactor.listenUDP(0, self, interface=host)
        except (CannotListenError, AttributeError, ValueError) as error:
            self.client_connection.refuse(negotiation.GENERAL_FAILURE, f"could not open a UDP relay: {error}")
            return
        bound = self._port.getHost()
        self.client_connection.established(format_address(bound), bound)

    def client_data(self, data: bytes) -> None:
        """
        Bytes on the control connection: it carries nothing after the
        reply, so they are dropped (unbuffered).
        """

    @property
    def version(self) -> int:
        """
        The address family (4 or 6) of the relay's own port.
        """
        return ipaddress.ip_address(self.transport.getHost().host.partition("%")[0]).version

    def datagramReceived(self, data: bytes, address: Any) -> None:
        host, port = address[0], address[1]
        try:
            source = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            self._drop("an unknown sender")
            return
        if _plain(source) == self.client and self.client_port in (port, None):
            if self.client_port is None:
                self.client_port = port
            self._from_client(data)
        elif (_plain(source), port) in self._peers:
            self._from_destination(data, host, port)
        else:
            self._drop("a sender the client never sent to")

    def _from_client(self, data: bytes) -> None:
        try:
            host, port, address_type, payload = read_datagram(data)
        except NegotiationError as error:
            self._drop("a malformed datagram", str(error))
            return
        address = host_address(host)
        if address is not None:
            self._send(address, False, port, payload)
            return
        rule = self.factory.rules.match(host, port)
        if rule is not None:
            self._drop("a blocked destination", f"{host}:{port}, rule {rule}")
            return
        if self._lookups >= MAX_LOOKUPS:
            self._drop("too many lookups under way")
            return
        self._lookups += 1
        looking: Deferred[list[Address]] = maybeDeferred(resolve_addresses, self.factory.reactor, host,
                                                         self.factory.connect_timeout)
        looking.addBoth(self._looked_up, host, port, payload)

    def _looked_up(self, result: "list[Address] | Failure", host: str, port: int, payload: bytes) -> None:
        self._lookups -= 1
        if self._closed:
            return
        if isinstance(result, Failure):
            self._drop("a name that did not resolve", host)
            return
        # The first of the name's addresses that passes, of the relay's family.
        try:
            allowed = checked_addresses(self.factory.destination_rules, self.factory.local, result, port)
        except Blocked as error:
            self._drop("a refused destination", str(error))
            return
        except DNSLookupError:
            self._drop("a name that did not resolve", host)
            return
        for address in allowed:
            if address.version == self.version:
                self._send(address, True, port, payload)
                return
        self._drop("a destination of the other address family", host)

    def _send(self, address: Address, resolved: bool, port: int, payload: bytes) -> None:
        try:
            check_destination(self.factory.destination_rules, self.factory.local, address, port, resolved)
        except Blocked as error:
            self._drop("a refused destination", str(error))
            return
        if address.version != self.version:
            self._drop("a destination of the other address family", str(address))
            return
        key = (_plain(address), port)
        self._peers[key] = None
        self._peers.move_to_end(key)
        if len(self._peers) > MAX_PEERS:
            self._peers.popitem(last=False)
        self.transport.write(payload, (str(address), port))
        self.client_connection.moved(forwarded=len(payload))

    def _from_destination(self, data: bytes, host: str, port: int) -> None:
        assert self.client_port is not None
        self.transport.write(datagram_header(host, port) + data, (str(self.client), self.client_port))
        self.client_connection.moved(returned=len(data))

    def _drop(self, reason: str, detail: str | None = None) -> None:
        # Counted and logged by kind only, with the first datagram's detail:
        # the detail is the client's to choose (a new name or address in
        # every datagram), and would otherwise grow the table and the log
        # without bound.
        self.factory.metrics.udp_dropped += 1
        first = reason not in self.dropped
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if first:
            # Once per kind and association: a sender cannot fill the log.
            self.log.warn("{peer}: UDP datagram dropped: {reason}", peer=self.peer,
                          reason=reason if detail is None else f"{reason} ({detail})")

    def close(self) -> None:
        """
        Stop relaying: the control connection has closed.
        """
        if not self._closed:
            self._closed = True
            if self._port is not None:
                self._port.stopListening()


def _plain(address: Address) -> Address:
    if address.version == 6:
        address = ipaddress.IPv6Address(int(address))  # without a zone
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
    return address


def header_for(host: str, port: int) -> bytes:
    """
    :returns: a client's datagram header for C{host:port} (for tests and
        clients), an address or a name.
    """
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        name = host.encode("ascii")
        return b"\x00\x00\x00" + bytes((negotiation.DOMAIN_NAME, len(name))) + name + struct.pack("!H", port)
    return datagram_header(str(address), port)
