"""
Tests for L{netproxy.socks.protocol}: the SOCKS5 negotiation on a string
transport, its refusals with each RFC 1928 reply code, logins, timeouts on a
clock, and the tunnel it opens on a memory reactor.
"""

import struct

from twisted.internet import error as neterror
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.auth import ProxyAuth
from netproxy.http.passwords import AuthFile
from netproxy.socks import negotiation
from netproxy.socks.protocol import SocksFactory
from netproxy.testing import FakeNameResolver, complete_connection, connect, fail_connection
from netproxy.this_host import LocalDestinations
from tests.address_helpers import name_resolver
from tests.password_helpers import USERS

CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)
GREETING = b"\x05\x01\x00"
LOGIN_GREETING = b"\x05\x02\x00\x02"
NO_AUTH = b"\x05\x00"


def connect_request(host, port=80, command=negotiation.CONNECT):
    """
    :returns: a request for C{host} (an IPv4 address in dotted form, an
        IPv6 one with a colon, else a name).
    """
    if ":" in host:
        import ipaddress

        address = bytes((negotiation.IPV6,)) + ipaddress.IPv6Address(host).packed
    elif host.replace(".", "").isdigit():
        address = bytes((negotiation.IPV4,)) + bytes(int(part) for part in host.split("."))
    else:
        address = bytes((negotiation.DOMAIN_NAME, len(host))) + host.encode("ascii")
    return bytes((5, command, 0)) + address + struct.pack("!H", port)


def login(user, password):
    """
    :returns: an RFC 1929 login.
    """
    return bytes((1, len(user))) + user + bytes((len(password),)) + password


def refusal(code):
    """
    :returns: the reply refusing a request with C{code}.
    """
    return negotiation.reply(code)


class ManualChecks:
    """
    A C{run_blocking} that holds each password check until the test runs it.
    """

    def __init__(self):
        self.pending = []

    def __call__(self, function, *args):
        deferred = Deferred()
        self.pending.append((deferred, function, args))
        return deferred

    def run_all(self):
        pending, self.pending = self.pending, []
        for deferred, function, args in pending:
            deferred.callback(function(*args))


class _Port:
    """
    A listening port, as L{netproxy.http.loops.Listening.add} sees it.
    """

    def __init__(self, address):
        self.address = address

    def getHost(self):
        return self.address


class SocksTestCase(SynchronousTestCase):
    """
    A L{SocksFactory} on a memory reactor that resolves the test names, for
    loopback clients, and one client connected to it.
    """

    blocked = ("192.0.2.66", "*.blocked.test", "*:25")

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.reactor.installNameResolver(name_resolver())
        self.factory = SocksFactory(self.reactor, RuleSet([parse_rule("127.0.0.0/8")]),
                                    RuleSet([parse_rule(rule) for rule in self.blocked]), connect_timeout=10,
                                    handshake_timeout=30, tunnel_idle_timeout=900, idle_timeout=20)
        self.access = []
        self.factory.access_log.add_observer(self.access.append)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.protocol, self.transport = connect(self.factory, CLIENT)

    def send(self, data):
        """
        Deliver C{data} from the client.
        """
        self.protocol.dataReceived(data)

    def take(self):
        """
        :returns: what the client was sent since the last call.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    def assertClosed(self):
        """
        The client's connection was closed.
        """
        self.assertFalse(self.transport.connected)

    def assertRefused(self, request, code):
        """
        C{request} (after the greeting) gets reply C{code}, and the client is closed.
        """
        self.send(GREETING)
        self.assertEqual(self.take(), NO_AUTH)
        self.send(request)
        self.assertEqual(self.take(), refusal(code))
        self.assertClosed()

    def open_tunnel(self, host="192.0.2.1", port=80, extra=b""):
        """
        Negotiate a CONNECT to C{host:port} and let the destination accept.

        :returns: the destination's protocol and transport.
        """
        self.send(GREETING + connect_request(host, port) + extra)
        self.assertEqual(self.take(), NO_AUTH)
        return complete_connection(self.reactor)


class TunnelTests(SocksTestCase):
    """
    CONNECT opens a tunnel that carries bytes both ways and closes with
    either side.
    """

    def test_connect_ipv4(self):
        """A CONNECT to an IPv4 address connects there, replies 0 with the bound address, and splices."""
        self.send(GREETING)
        self.assertEqual(self.take(), NO_AUTH)
        self.send(connect_request("192.0.2.1", 8080))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("192.0.2.1", 8080))
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.take(), b"")
        destination, upstream = complete_connection(self.reactor)
        bound = upstream.getHost()
        self.assertEqual(self.take(), negotiation.reply(0, bound.host, bound.port))
        self.assertEqual(self.transport.producerState, "producing")
        # Each side is the other's producer: back-pressure both ways.
        self.assertIs(self.transport.producer, upstream)
        self.assertIs(upstream.producer, self.transport)
        self.send(b"ping")
        self.assertEqual(upstream.value(), b"ping")
        destination.dataReceived(b"pong!")
        self.assertEqual(self.take(), b"pong!")

    def test_connect_name(self):
        """A CONNECT to a name connects to the address it resolves to."""
        self.factory.rules = RuleSet([])
        self.send(GREETING + connect_request("elsewhere.test", 443))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("192.0.2.80", 443))

    def test_connect_ipv6(self):
        """A CONNECT to an IPv6 literal connects there."""
        self.send(GREETING + connect_request("2001:db8::1", 443))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("2001:db8::1", 443))

    def test_early_data(self):
        """Bytes sent with the request, before the reply, reach the destination once it is connected."""
        destination, upstream = self.open_tunnel(extra=b"GET / HTTP/1.0\r\n\r\n")
        self.assertEqual(upstream.value(), b"GET / HTTP/1.0\r\n\r\n")

    def test_destination_closes(self):
        """The destination closing closes the client, after one access line with the bytes each way."""
        destination, upstream = self.open_tunnel()
        self.send(b"abc")
        destination.dataReceived(b"12345")
        upstream.loseConnection()
        self.assertClosed()
        [line] = self.access
        self.assertEqual((line["client"], line["user"], line["command"], line["destination"], line["address"],
                          line["reply"], line["received"], line["sent"]),
                         ("127.0.0.1", None, "CONNECT", "192.0.2.1:80", "192.0.2.1:80", 0, 3, 5))
        self.assertEqual(self.factory.tunnels, 0)

    def test_client_closes(self):
        """The client closing closes the destination, and writes the access line."""
        destination, upstream = self.open_tunnel()
        self.assertEqual(self.factory.tunnels, 1)
        self.transport.loseConnection()
        self.assertFalse(upstream.connected)
        self.assertEqual(len(self.access), 1)
        self.assertEqual(self.factory.tunnels, 0)

    def test_client_leaves_while_connecting(self):
        """A client that leaves while its destination is being connected cancels the attempt."""
        self.send(GREETING + connect_request("192.0.2.1"))
        connector = self.reactor.connectors[0]
        self.transport.loseConnection()
        self.assertTrue(connector.stoppedConnecting or connector._disconnected)
        self.assertEqual(self.access, [])

    def test_tunnel_idle_timeout(self):
        """A tunnel carrying nothing either way for its timeout is closed; traffic restarts the count."""
        destination, upstream = self.open_tunnel()
        self.reactor.advance(800)
        destination.dataReceived(b"x")
        self.reactor.advance(800)
        self.assertTrue(self.transport.connected)
        self.reactor.advance(100)
        self.assertClosed()
        self.assertFalse(upstream.connected)

    def test_connecting_is_not_idle(self):
        """Waiting for the destination is not the client's idleness."""
        self.send(GREETING + connect_request("192.0.2.1"))
        self.reactor.advance(25)
        self.assertTrue(self.transport.connected)

    def test_metrics(self):
        """Requests are counted by command and reply, tunnel bytes each way."""
        destination, upstream = self.open_tunnel()
        self.send(b"abc")
        destination.dataReceived(b"12")
        upstream.loseConnection()
        page = self.factory.metrics.registry.render().decode()
        self.assertIn('netproxy_socks_requests_total{command="CONNECT",reply="0"} 1', page)
        self.assertIn("netproxy_socks_received_bytes_total 3", page)
        self.assertIn("netproxy_socks_sent_bytes_total 2", page)
        self.assertIn("netproxy_socks_tunnels 0", page)

    def test_shutdown(self):
        """On shutdown a negotiating client is closed; a tunnel stays for the drain deadline."""
        other, other_transport = connect(self.factory, CLIENT)
        other.dataReceived(GREETING)
        destination, upstream = self.open_tunnel()
        self.protocol.close_when_idle()
        other.close_when_idle()
        self.assertTrue(self.transport.connected)
        self.assertFalse(other_transport.connected)


class RefusalTests(SocksTestCase):
    """
    Each refusal answers its RFC 1928 reply code and closes.
    """

    def test_blocked_address(self):
        """A blocked address gets reply 2 (not allowed by ruleset) without a connection attempt."""
        self.assertRefused(connect_request("192.0.2.66"), negotiation.NOT_ALLOWED)
        self.assertEqual(self.reactor.tcpClients, [])
        [line] = self.access
        self.assertEqual((line["reply"], line["address"]), (2, None))

    def test_blocked_port(self):
        """A blocked port gets reply 2."""
        self.assertRefused(connect_request("192.0.2.1", 25), negotiation.NOT_ALLOWED)

    def test_blocked_name(self):
        """A name matching a rule gets reply 2 before it is resolved."""
        self.reactor.installNameResolver(FakeNameResolver(lambda name: self.fail("resolved")))
        self.assertRefused(connect_request("www.blocked.test"), negotiation.NOT_ALLOWED)

    def test_blocked_resolved(self):
        """A name resolving to a blocked address gets reply 2."""
        self.factory.rules = RuleSet([parse_rule("192.0.2.80")])
        self.assertRefused(connect_request("elsewhere.test"), negotiation.NOT_ALLOWED)

    def test_local_destination(self):
        """Without --allow-local, this host's addresses get reply 2, by literal or by a name resolving there."""
        self.factory.local = LocalDestinations(lambda: [])
        for host in ("127.0.0.1", "0.0.0.0", "::1", "::ffff:127.0.0.1", "localhost.test", "zero.test"):
            protocol, transport = connect(self.factory, CLIENT)
            protocol.dataReceived(GREETING + connect_request(host))
            self.assertEqual(transport.value(), NO_AUTH + refusal(negotiation.NOT_ALLOWED), host)
            self.assertFalse(transport.connected)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_allow_local(self):
        """With --allow-local (no LocalDestinations), a loopback destination is connected."""
        self.factory.rules = RuleSet([])
        self.send(GREETING + connect_request("localhost.test"))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 80))

    def test_own_address(self):
        """Even with --allow-local, the proxy's own listening address gets reply 2 (a tunnel to itself is a loop), by
        literal, as 0.0.0.0 or by a name resolving there; another local port is connected."""
        self.factory.rules = RuleSet([])
        self.factory.listening.add(_Port(IPv4Address("TCP", "127.0.0.1", 1080)))
        for host in ("127.0.0.1", "0.0.0.0", "::ffff:127.0.0.1", "localhost.test"):
            protocol, transport = connect(self.factory, CLIENT)
            protocol.dataReceived(GREETING + connect_request(host, 1080))
            self.assertEqual(transport.value(), NO_AUTH + refusal(negotiation.NOT_ALLOWED), host)
            self.assertFalse(transport.connected)
        self.assertEqual(self.reactor.tcpClients, [])
        self.send(GREETING + connect_request("127.0.0.1", 1081))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 1081))

    def test_network_unreachable(self):
        """ENETUNREACH gets reply 3."""
        self.send(GREETING + connect_request("192.0.2.1"))
        fail_connection(self.reactor, neterror.NoRouteError(string="101: Network is unreachable."))
        self.assertEqual(self.take(), NO_AUTH + refusal(negotiation.NETWORK_UNREACHABLE))
        self.assertClosed()

    def test_host_unreachable(self):
        """EHOSTUNREACH gets reply 4."""
        self.send(GREETING + connect_request("192.0.2.1"))
        fail_connection(self.reactor, neterror.ConnectError(string="113: No route to host."))
        self.assertEqual(self.take(), NO_AUTH + refusal(negotiation.HOST_UNREACHABLE))

    def test_name_not_found(self):
        """A name that does not resolve gets reply 4."""
        self.assertRefused(connect_request("nowhere.test"), negotiation.HOST_UNREACHABLE)

    def test_connection_refused(self):
        """A refused connection gets reply 5."""
        self.send(GREETING + connect_request("192.0.2.1"))
        fail_connection(self.reactor, neterror.ConnectionRefusedError())
        self.assertEqual(self.take(), NO_AUTH + refusal(negotiation.CONNECTION_REFUSED))
        self.assertClosed()
        self.assertEqual(self.access[0]["reply"], 5)

    def test_timeout(self):
        """A connection attempt that times out gets reply 6 (TTL expired)."""
        self.send(GREETING + connect_request("192.0.2.1"))
        fail_connection(self.reactor, neterror.TimeoutError())
        self.assertEqual(self.take(), NO_AUTH + refusal(negotiation.TTL_EXPIRED))

    def test_other_failure(self):
        """Any other failure gets reply 1 (general failure)."""
        self.send(GREETING + connect_request("192.0.2.1"))
        fail_connection(self.reactor, neterror.ConnectError(string="something odd"))
        self.assertEqual(self.take(), NO_AUTH + refusal(negotiation.GENERAL_FAILURE))

    def test_bind_and_unknown(self):
        """BIND, unknown commands and (with --no-udp) UDP ASSOCIATE get reply 7, and are logged by name."""
        self.factory.udp = False
        for command, name in ((negotiation.BIND, "BIND"), (negotiation.UDP_ASSOCIATE, "UDP-ASSOCIATE"),
                              (0x42, "OTHER")):
            protocol, transport = connect(self.factory, CLIENT)
            protocol.dataReceived(GREETING + connect_request("192.0.2.1", command=command))
            self.assertEqual(transport.value(), NO_AUTH + refusal(negotiation.COMMAND_NOT_SUPPORTED))
            self.assertFalse(transport.connected)
            self.assertEqual(self.access[-1]["command"], name)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_address_type(self):
        """An unknown address type gets reply 8."""
        self.assertRefused(b"\x05\x01\x00\x02" + bytes(6), negotiation.ADDRESS_TYPE_NOT_SUPPORTED)

    def test_malformed_name(self):
        """A name with a control byte gets reply 1, and the log holds no raw control byte."""
        self.assertRefused(b"\x05\x01\x00\x03\x05ab\x1bcd\x00\x50", negotiation.GENERAL_FAILURE)
        for event in self.events:
            self.assertNotIn("\x1b", repr(event.get("problem", "")))

    def test_client_not_allowed(self):
        """A client outside --allow is closed at once, sent nothing."""
        protocol, transport = connect(self.factory, IPv4Address("TCP", "192.0.2.9", 5000))
        self.assertFalse(transport.connected)
        self.assertEqual(transport.value(), b"")


class NegotiationTests(SocksTestCase):
    """
    Malformed, truncated, oversized and slow negotiations are closed, and
    never hold more than a message.
    """

    def test_wrong_version(self):
        """A greeting of another version is closed without a reply."""
        self.send(b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00")
        self.assertEqual(self.take(), b"")
        self.assertClosed()

    def test_http_request(self):
        """An HTTP request sent to the SOCKS port is closed without a reply."""
        self.send(b"GET http://example.com/ HTTP/1.1\r\n\r\n")
        self.assertEqual(self.take(), b"")
        self.assertClosed()

    def test_no_acceptable_method(self):
        """A client offering only username/password to a proxy without logins gets 0xFF and is closed."""
        self.send(b"\x05\x01\x02")
        self.assertEqual(self.take(), b"\x05\xff")
        self.assertClosed()

    def test_no_method(self):
        """A greeting offering no method at all gets 0xFF."""
        self.send(b"\x05\x00")
        self.assertEqual(self.take(), b"\x05\xff")
        self.assertClosed()

    def test_byte_by_byte(self):
        """A negotiation sent one byte at a time works."""
        for byte in GREETING + connect_request("192.0.2.1"):
            self.send(bytes((byte,)))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("192.0.2.1", 80))

    def test_oversized(self):
        """Junk after a greeting is read as the request and refused at once, whatever its size."""
        self.send(GREETING + b"\x05\x01\x07" + b"x" * 100_000)
        self.assertEqual(self.take(), NO_AUTH + refusal(negotiation.GENERAL_FAILURE))
        self.assertClosed()
        self.assertEqual(self.protocol._buffer, b"")

    def test_truncated_then_idle(self):
        """A truncated greeting is closed after the idle timeout."""
        self.send(b"\x05\x02\x00")
        self.reactor.advance(19)
        self.assertTrue(self.transport.connected)
        self.reactor.advance(1)
        self.assertClosed()

    def test_trickle(self):
        """A client trickling its negotiation is closed at the handshake deadline, however often it sends."""
        request = GREETING + connect_request("example.test")
        for byte in request[:10]:
            self.send(bytes((byte,)))
            self.reactor.advance(5)
            if not self.transport.connected:
                break
        self.assertClosed()
        self.assertEqual(self.reactor.seconds(), 30)
        self.assertTrue(any("negotiation not finished" in str(event.get("problem")) for event in self.events))

    def test_daemon_serves_others(self):
        """A client's bad input leaves the other clients' negotiations alone."""
        other, other_transport = connect(self.factory, CLIENT)
        self.send(b"\xff" * 50)
        other.dataReceived(GREETING + connect_request("192.0.2.1"))
        self.assertEqual(other_transport.value(), NO_AUTH)
        self.assertEqual(len(self.reactor.tcpClients), 1)


class LoginTests(SynchronousTestCase):
    """
    With an auth file, clients log in with username/password (RFC 1929),
    checked off the reactor thread, with the HTTP proxy's throttle.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = SocksFactory(self.reactor, RuleSet([parse_rule("127.0.0.0/8")]), RuleSet([]))
        path = FilePath(self.mktemp())
        path.setContent(USERS.encode())
        self.checks = ManualChecks()
        self.factory.auth = ProxyAuth(AuthFile(path.path), self.reactor, self.checks)
        self.access = []
        self.factory.access_log.add_observer(self.access.append)
        self.protocol, self.transport = connect(self.factory, CLIENT)

    def test_login(self):
        """The right password is checked off the reactor thread (the client paused), then accepted."""
        self.protocol.dataReceived(LOGIN_GREETING)
        self.assertEqual(self.transport.value(), b"\x05\x02")
        self.transport.clear()
        self.protocol.dataReceived(login(b"alice", b"alice's secret") + connect_request("192.0.2.1"))
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(self.transport.value(), b"")
        self.checks.run_all()
        self.assertEqual(self.transport.value(), b"\x01\x00")
        # The request sent with the login is read once it is accepted.
        self.assertEqual(self.reactor.tcpClients[0][:2], ("192.0.2.1", 80))
        complete_connection(self.reactor)[1].loseConnection()
        self.assertEqual(self.access[0]["user"], "alice")
        page = self.factory.metrics.registry.render().decode()
        self.assertIn('netproxy_socks_logins_total{result="accepted"} 1', page)

    def test_wrong_password(self):
        """A wrong password gets status 1 and the connection is closed."""
        self.protocol.dataReceived(LOGIN_GREETING + login(b"alice", b"wrong") + connect_request("192.0.2.1"))
        self.checks.run_all()
        self.assertEqual(self.transport.value(), b"\x05\x02\x01\x01")
        self.assertFalse(self.transport.connected)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_unknown_user(self):
        """An unknown user gets status 1 too."""
        self.protocol.dataReceived(LOGIN_GREETING + login(b"mallory", b"x"))
        self.checks.run_all()
        self.assertEqual(self.transport.value(), b"\x05\x02\x01\x01")

    def test_no_login_offered(self):
        """A client offering no username/password method gets 0xFF."""
        self.protocol.dataReceived(GREETING)
        self.assertEqual(self.transport.value(), b"\x05\xff")
        self.assertFalse(self.transport.connected)

    def test_malformed_login(self):
        """A login of the wrong version, or with no user name, gets status 1 unchecked."""
        for data in (b"\x05\x01\x00\x01\x00", b"\x01\x00\x01x"):
            protocol, transport = connect(self.factory, CLIENT)
            protocol.dataReceived(LOGIN_GREETING + data)
            self.assertEqual(transport.value(), b"\x05\x02\x01\x01")
            self.assertFalse(transport.connected)
        self.assertEqual(self.checks.pending, [])

    def test_client_leaves_while_checked(self):
        """A client that leaves while its password is checked is forgotten."""
        self.protocol.dataReceived(LOGIN_GREETING + login(b"alice", b"alice's secret"))
        self.transport.loseConnection()
        self.checks.run_all()
        self.assertEqual(self.transport.value(), b"\x05\x02")

    def test_throttled(self):
        """A client that failed too often is refused without a check."""
        throttle = self.factory.auth.throttle
        for _ in range(100):
            if throttle.wait("127.0.0.1"):
                break
            throttle.failed("127.0.0.1")
        self.protocol.dataReceived(LOGIN_GREETING + login(b"alice", b"alice's secret"))
        self.reactor.advance(self.factory.auth.tarpit)
        self.assertEqual(self.transport.value(), b"\x05\x02\x01\x01")
        self.assertEqual(self.checks.pending, [])


class ShutdownTests(SocksTestCase):
    """
    A graceful shutdown opens no new tunnel.
    """

    def test_connected_while_stopping(self):
        """A destination that connects once shutdown began is closed, and the client gets reply 1."""
        self.send(GREETING + connect_request("192.0.2.1"))
        self.protocol.close_when_idle()
        self.assertTrue(self.transport.connected)
        destination, upstream = complete_connection(self.reactor)
        self.assertFalse(upstream.connected)
        self.assertEqual(self.take(), NO_AUTH + refusal(negotiation.GENERAL_FAILURE))
        self.assertClosed()
        self.assertEqual(self.factory.tunnels, 0)
