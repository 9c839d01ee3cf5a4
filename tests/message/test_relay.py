"""
Tests for L{netproxy.message.relay}: the relay role's replies (byte for byte, as
the README's error table writes them), its upstream connections, timeouts, limits,
back-pressure and log events, driven in memory.
"""

import json

from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransport,
    StringTransportWithDisconnection,
)
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.message.relay import NOT_ALLOWED, RelayFactory, RelayProtocol
from netproxy.rules_file import RulesFile
from netproxy.testing import FakeNameResolver, complete_connection, fail_connection
from tests.address_helpers import THIS_HOST, name_resolver

CLIENT = IPv4Address("TCP", "127.0.0.1", 5555)
IDLE_TIMEOUT = 30.0
CONNECT_TIMEOUT = 5.0


def encode(**fields):
    """
    :returns: a relay request to 127.0.0.1:8888 carrying C{tgmr}, as bytes
        with no newline, with C{fields} replaced.
    """
    message = {"server_ip": "127.0.0.1", "server_port": 8888, "message": "tgmr"}
    message.update(fields)
    return json.dumps(message).encode("utf-8")


def make_factory(rules=("127.0.0.1:7777",), reactor=None):
    """
    :returns: a L{RelayFactory} on a L{MemoryReactorClock} whose blocklist
        holds C{rules}.
    """
    return RelayFactory(
        reactor=MemoryReactorClock() if reactor is None else reactor,
        rules=RulesFile(RuleSet([parse_rule(rule) for rule in rules])),
        idle_timeout=IDLE_TIMEOUT,
        connect_timeout=CONNECT_TIMEOUT,
    )


def connect_client(factory, peer=CLIENT):
    """
    Connect a client to the relay over a L{StringTransportWithDisconnection}.

    :returns: the relay protocol and its transport.
    """
    protocol = factory.buildProtocol(peer)
    transport = StringTransportWithDisconnection(peerAddress=peer)
    transport.protocol = protocol
    protocol.makeConnection(transport)
    return protocol, transport


class RelayTestCase(SynchronousTestCase):
    """
    A relay with one connected client, its reactor and a log observer.
    """

    rules = ("127.0.0.1:7777",)

    def setUp(self):
        self.factory = make_factory(self.rules)
        self.reactor = self.factory.reactor
        self.protocol, self.transport = connect_client(self.factory)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def relay_events(self, level=None):
        """
        :returns: the events logged by the relay protocol, at C{level} if given.
        """
        return [
            event
            for event in self.events
            if event.get("log_namespace", "").startswith("netproxy.message.relay")
            and (level is None or event["log_level"] == level)
        ]

    def assertClosed(self, transport):
        """
        Assert that C{transport} was closed (its protocol saw connectionLost).
        """
        self.assertFalse(transport.connected, "connection still open")

    def assertOpen(self, transport):
        """
        Assert that C{transport} was not closed.
        """
        self.assertTrue(transport.connected, "connection closed")

    def assertNoErrorsLogged(self):
        """
        Assert that nothing was logged at error level or above, and no failure.
        """
        bad = [e for e in self.events if e["log_level"] in (LogLevel.error, LogLevel.critical)]
        self.assertEqual(bad, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def exchange(self, data=None):
        """
        Send a request and let its upstream connection succeed.

        :returns: the upstream protocol and transport.
        """
        self.protocol.dataReceived(encode() if data is None else data)
        return complete_connection(self.reactor)


class BlockedTests(RelayTestCase):
    """
    Requests for a destination the blocklist forbids.
    """

    rules = ("127.0.0.1:7777", ":2222", "10.0.0.0/8", "example.com")

    def test_reply_is_exact(self):
        """
        A blocked request gets exactly C{Error, not allowed address}, without a newline.
        """
        self.protocol.dataReceived(encode(server_port=7777))
        self.assertEqual(self.transport.value(), b"Error, not allowed address")
        self.assertEqual(NOT_ALLOWED, b"Error, not allowed address")

    def test_connection_closed(self):
        """
        The relay closes the client connection after the blocked reply.
        """
        self.protocol.dataReceived(encode(server_port=7777))
        self.assertClosed(self.transport)

    def test_no_connection_attempt(self):
        """
        The blocked destination never sees a connection attempt.
        """
        self.protocol.dataReceived(encode(server_port=7777))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_port_rule(self):
        """
        A port-on-any-host rule blocks that port everywhere.
        """
        self.protocol.dataReceived(encode(server_ip="192.0.2.1", server_port=2222))
        self.assertEqual(self.transport.value(), NOT_ALLOWED)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_network_rule(self):
        """
        A network rule blocks every address in it.
        """
        self.protocol.dataReceived(encode(server_ip="10.20.30.40", server_port=80))
        self.assertEqual(self.transport.value(), NOT_ALLOWED)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_name_rule_blocks_before_resolving(self):
        """
        A host-name rule blocks the name without resolving it.
        """
        self.reactor.installNameResolver(FakeNameResolver(lambda name: self.fail("resolved a blocked name")))
        self.protocol.dataReceived(encode(server_ip="Example.COM", server_port=80))
        self.assertEqual(self.transport.value(), NOT_ALLOWED)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_other_port_allowed(self):
        """
        An address-and-port rule does not block the same address on another port.
        """
        self.protocol.dataReceived(encode(server_port=7778))
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual([c[:2] for c in self.reactor.tcpClients], [("127.0.0.1", 7778)])

    def test_logged_with_peer_and_rule(self):
        """
        A blocked request is logged as a warning naming the client and the rule.
        """
        self.protocol.dataReceived(encode(server_port=7777))
        [event] = self.relay_events(LogLevel.warn)
        self.assertEqual(event["peer"], "127.0.0.1:5555")
        self.assertEqual(event["rule"], "127.0.0.1:7777")
        self.assertEqual(event["destination"], "127.0.0.1:7777")

    def test_blocked_after_exchange_closes_upstream(self):
        """
        A blocked request after a forwarded one closes the earlier upstream connection too.
        """
        upstream, upstream_transport = self.exchange()
        self.protocol.dataReceived(encode(server_port=7777))
        self.assertClosed(upstream_transport)
        self.assertEqual(self.transport.value(), NOT_ALLOWED)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_later_requests_ignored(self):
        """
        Requests after a blocked one in the same data are not forwarded.
        """
        self.protocol.dataReceived(encode(server_port=7777) + b"\n" + encode())
        self.assertEqual(self.transport.value(), NOT_ALLOWED)
        self.assertEqual(self.reactor.tcpClients, [])


class ForwardingTests(RelayTestCase):
    """
    Allowed requests: the connection, the message text and the reply bytes.
    """

    def test_connects_to_destination(self):
        """
        An allowed request makes one connection attempt to its destination, with the connect timeout.
        """
        self.protocol.dataReceived(encode())
        [(host, port, _, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 8888, CONNECT_TIMEOUT))

    def test_ipv6_destination(self):
        """
        An IPv6 destination is dialled at its address.
        """
        self.protocol.dataReceived(encode(server_ip="[::1]", server_port="8888"))
        [(host, port, _, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("::1", 8888, CONNECT_TIMEOUT))

    def test_nothing_written_before_connect(self):
        """
        The client gets nothing while the upstream connection is being made.
        """
        self.protocol.dataReceived(encode())
        self.assertEqual(self.transport.value(), b"")
        self.assertOpen(self.transport)

    def test_writes_message_text_only(self):
        """
        The destination receives exactly the message text: no JSON, no newline.
        """
        _, upstream_transport = self.exchange()
        self.assertEqual(upstream_transport.value(), b"tgmr")

    def test_unicode_message_utf8(self):
        """
        A non-ASCII message reaches the destination as UTF-8.
        """
        _, upstream_transport = self.exchange(encode(message="snow ☃"))
        self.assertEqual(upstream_transport.value(), "snow ☃".encode("utf-8"))

    def test_reply_relayed_unchanged(self):
        """
        The destination's C{DONE} reaches the client as exactly C{DONE}.
        """
        upstream, _ = self.exchange()
        upstream.dataReceived(b"DONE")
        self.assertEqual(self.transport.value(), b"DONE")

    def test_chunks_relayed_as_they_arrive(self):
        """
        Reply chunks reach the client in order as they arrive, while the destination stays connected.
        """
        upstream, upstream_transport = self.exchange()
        seen = b""
        for chunk in (b"one ", b"\x00two\n", b"{three}"):
            upstream.dataReceived(chunk)
            seen += chunk
            self.assertEqual(self.transport.value(), seen)
        self.assertOpen(upstream_transport)
        self.assertOpen(self.transport)

    def test_client_stays_open_after_upstream_closes(self):
        """
        When the destination closes, the client connection stays open.
        """
        upstream, upstream_transport = self.exchange()
        upstream.dataReceived(b"DONE")
        upstream_transport.loseConnection()
        self.assertOpen(self.transport)
        self.assertEqual(self.transport.value(), b"DONE")

    def test_second_request_after_upstream_closed(self):
        """
        A second request on the same connection is a second exchange with its own connection.
        """
        upstream, upstream_transport = self.exchange()
        upstream.dataReceived(b"DONE")
        upstream_transport.loseConnection()
        second, second_transport = self.exchange(encode(server_port=9999, message="again"))
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(self.reactor.tcpClients[1][:2], ("127.0.0.1", 9999))
        self.assertEqual(second_transport.value(), b"again")
        second.dataReceived(b"OK")
        self.assertEqual(self.transport.value(), b"DONEOK")

    def test_new_request_closes_previous_upstream(self):
        """
        The client's next request closes the previous exchange's upstream connection.
        """
        first, first_transport = self.exchange()
        self.protocol.dataReceived(encode(message="next"))
        self.assertClosed(first_transport)
        self.assertEqual(len(self.reactor.tcpClients), 2)
        second, second_transport = complete_connection(self.reactor)
        self.assertEqual(second_transport.value(), b"next")

    def test_stale_upstream_data_not_relayed(self):
        """
        Data from an earlier exchange's connection is not mixed into the current one.
        """
        first, _ = self.exchange()
        self.protocol.dataReceived(encode(message="next"))
        second, _ = complete_connection(self.reactor)
        first.dataReceived(b"late")
        second.dataReceived(b"fresh")
        self.assertEqual(self.transport.value(), b"fresh")

    def test_queued_requests_one_at_a_time(self):
        """
        Two requests in one chunk: the second is dialled only once the first is connected.
        """
        self.protocol.dataReceived(encode(message="a") + b"\n" + encode(message="b") + b"\n")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        _, first_transport = complete_connection(self.reactor, 0)
        self.assertEqual(first_transport.value(), b"a")
        self.assertEqual(len(self.reactor.tcpClients), 2)
        _, second_transport = complete_connection(self.reactor, 1)
        self.assertEqual(second_transport.value(), b"b")

    def test_split_one_byte_at_a_time(self):
        """
        A request that arrives one byte at a time is forwarded once its closing brace arrives.
        """
        data = encode()
        for index in range(len(data) - 1):
            self.protocol.dataReceived(data[index : index + 1])
        self.assertEqual(self.reactor.tcpClients, [])
        self.protocol.dataReceived(data[-1:])
        self.assertEqual(len(self.reactor.tcpClients), 1)
        _, upstream_transport = complete_connection(self.reactor)
        self.assertEqual(upstream_transport.value(), b"tgmr")

    def test_whitespace_between_requests(self):
        """
        Newlines and spaces around requests are ignored.
        """
        _, upstream_transport = self.exchange(b"\r\n  " + encode() + b"\n\n")
        self.assertEqual(upstream_transport.value(), b"tgmr")
        self.assertEqual(self.transport.value(), b"")

    def test_received_and_forwarded_logged(self):
        """
        The request is logged with client, destination and size; the forwarding with destination and size.
        """
        self.exchange(encode(message="hello"))
        events = [
            (e["log_format"], e.get("destination"), e.get("size"), e.get("peer"))
            for e in self.relay_events(LogLevel.info)
        ]
        self.assertEqual(
            events,
            [
                (
                    "received request from {peer} for {destination} ({size} bytes)",
                    "127.0.0.1:8888",
                    5,
                    "127.0.0.1:5555",
                ),
                ("forwarded {size} bytes from {peer} to {destination}", "127.0.0.1:8888", 5, "127.0.0.1:5555"),
            ],
        )

    def test_exchange_close_logged_with_byte_counts(self):
        """
        The end of an exchange is logged with the bytes sent and received.
        """
        upstream, upstream_transport = self.exchange(encode(message="hello"))
        upstream.dataReceived(b"DONE")
        upstream.dataReceived(b"!!")
        upstream_transport.loseConnection()
        [event] = [e for e in self.relay_events() if "sent" in e]
        self.assertEqual((event["sent"], event["received"]), (5, 6))
        self.assertEqual(event["destination"], "127.0.0.1:8888")

    def test_client_close_logged(self):
        """
        The client connection's end is logged with its address.
        """
        self.transport.loseConnection()
        [event] = [e for e in self.relay_events() if e["log_format"] == "connection from {peer} closed"]
        self.assertEqual(event["peer"], "127.0.0.1:5555")

    def test_many_clients_concurrently(self):
        """
        Several clients are served at once, each with its own upstream connection.
        """
        other, other_transport = connect_client(self.factory, IPv4Address("TCP", "127.0.0.1", 6666))
        self.protocol.dataReceived(encode(message="one"))
        other.dataReceived(encode(message="two"))
        self.assertEqual(len(self.reactor.tcpClients), 2)
        first, first_upstream = complete_connection(self.reactor, 0)
        second, second_upstream = complete_connection(self.reactor, 1)
        self.assertEqual((first_upstream.value(), second_upstream.value()), (b"one", b"two"))
        second.dataReceived(b"2")
        first.dataReceived(b"1")
        self.assertEqual((self.transport.value(), other_transport.value()), (b"1", b"2"))


class ConnectFailureTests(RelayTestCase):
    """
    Destinations that cannot be reached.
    """

    def test_refused(self):
        """
        A refused connection gets the exact C{could not connect ...: connection refused} reply and a close.
        """
        self.protocol.dataReceived(encode(server_port=9))
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertEqual(self.transport.value(), b"Error, could not connect to 127.0.0.1:9: connection refused")
        self.assertClosed(self.transport)

    def test_timed_out(self):
        """
        A connection attempt that times out gets C{...: timed out} and a close.
        """
        self.protocol.dataReceived(encode(server_port=9))
        fail_connection(self.reactor, error.TimeoutError())
        self.assertEqual(self.transport.value(), b"Error, could not connect to 127.0.0.1:9: timed out")
        self.assertClosed(self.transport)

    def test_ipv6_destination_bracketed(self):
        """
        The failure reply writes an IPv6 destination in brackets.
        """
        self.protocol.dataReceived(encode(server_ip="::1", server_port=9))
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertEqual(self.transport.value(), b"Error, could not connect to [::1]:9: connection refused")

    def test_logged_as_error(self):
        """
        An unreachable destination is logged at error level with client, destination and reason.
        """
        self.protocol.dataReceived(encode(server_port=9))
        fail_connection(self.reactor, error.ConnectionRefusedError())
        [event] = self.relay_events(LogLevel.error)
        self.assertEqual(
            (event["peer"], event["destination"], event["reason"]),
            ("127.0.0.1:5555", "127.0.0.1:9", "connection refused"),
        )

    def test_host_not_found(self):
        """
        A name that does not resolve gets C{...: host not found}.
        """
        self.reactor.installNameResolver(FakeNameResolver(lambda name: fail(error.DNSLookupError(name))))
        self.protocol.dataReceived(encode(server_ip="nowhere.example", server_port=80))
        self.assertEqual(self.transport.value(), b"Error, could not connect to nowhere.example:80: host not found")
        self.assertClosed(self.transport)
        self.assertEqual(self.reactor.tcpClients, [])


class BadRequestTests(RelayTestCase):
    """
    Requests the relay cannot read: the exact C{Error, bad request: ...} replies.
    """

    def assertBadRequest(self, data, reason):
        """
        Assert that C{data} gets exactly C{Error, bad request: reason}, a close and no connection attempt.
        """
        self.protocol.dataReceived(data)
        self.assertEqual(self.transport.value(), b"Error, bad request: " + reason.encode("utf-8"))
        self.assertClosed(self.transport)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_bad_json(self):
        """
        Malformed JSON is refused with the parser's reason.
        """
        self.assertBadRequest(b'{"server_ip": }', "malformed JSON: Expecting value at column 15")

    def test_not_an_object(self):
        """
        A JSON array is not a request.
        """
        self.assertBadRequest(b"[1]", "expected a JSON object, got '['")

    def test_plain_text(self):
        """
        Plain text is refused on its first byte, without waiting for more.
        """
        self.assertBadRequest(b"hello", "expected a JSON object, got 'h'")

    def test_not_utf8(self):
        """
        A message that is not UTF-8 is refused.
        """
        self.assertBadRequest(b'{"message": "\xff"}', "message is not valid UTF-8")

    def test_too_large(self):
        """
        A 1 MiB object is refused for its size.
        """
        data = encode(message="x" * (1 << 20))
        self.assertBadRequest(data, "message larger than 65536 bytes")

    def test_too_large_in_pieces(self):
        """
        An object that grows past the limit over several chunks is refused.
        """
        self.protocol.dataReceived(b'{"message": "')
        for _ in range(20):
            self.protocol.dataReceived(b"x" * 4096)
        self.assertEqual(self.transport.value(), b"Error, bad request: message larger than 65536 bytes")
        self.assertClosed(self.transport)

    def test_missing_field(self):
        """
        A request without C{message} names the missing field.
        """
        self.assertBadRequest(b'{"server_ip": "127.0.0.1", "server_port": 8888}', "missing field 'message'")

    def test_message_wrong_type(self):
        """
        A non-string message is refused, naming its type.
        """
        self.assertBadRequest(encode(message=42), "message must be a string, got int")

    def test_server_ip_wrong_type(self):
        """
        A non-string address is refused.
        """
        self.assertBadRequest(encode(server_ip=[127, 0, 0, 1]), "server_ip must be an address, got [127, 0, 0, 1]")

    def test_port_zero(self):
        """
        Port 0 is refused.
        """
        self.assertBadRequest(encode(server_port=0), "server_port must be a port from 1 to 65535, got 0")

    def test_port_70000(self):
        """
        Port 70000 is refused.
        """
        self.assertBadRequest(encode(server_port=70000), "server_port must be a port from 1 to 65535, got 70000")

    def test_port_bool(self):
        """
        C{true} as a port is refused.
        """
        self.assertBadRequest(encode(server_port=True), "server_port must be a port from 1 to 65535, got True")

    def test_lone_surrogate_message(self):
        """
        A message with a lone surrogate gets a bad-request reply, not an exception.
        """
        self.assertBadRequest(
            b'{"server_ip": "127.0.0.1", "server_port": 1, "message": "\\ud800"}',
            "message is not valid Unicode text",
        )
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_logged_with_peer(self):
        """
        A bad request is logged as a warning naming the client and the reason.
        """
        self.protocol.dataReceived(b"[1]")
        [event] = self.relay_events(LogLevel.warn)
        self.assertEqual((event["peer"], event["reason"]), ("127.0.0.1:5555", "expected a JSON object, got '['"))

    def test_hostile_text_escaped(self):
        """
        A bad request quoting ESC, a newline and 0xff is logged with them as \\xhh, on one line.
        """
        self.protocol.dataReceived(encode(server_ip="x\x1b[2J\n\xff"))
        [event] = self.relay_events(LogLevel.warn)
        text = formatEvent(event)
        self.assertIn("\\x1b[2J", text)
        self.assertTrue(text.isascii() and text.isprintable(), text)

    def test_bad_request_after_exchange_closes_upstream(self):
        """
        A bad request after a forwarded one is answered and closes the earlier upstream connection.
        """
        upstream, upstream_transport = self.exchange()
        upstream.dataReceived(b"DONE")
        self.protocol.dataReceived(b"[1]")
        self.assertEqual(self.transport.value(), b"DONEError, bad request: expected a JSON object, got '['")
        self.assertClosed(upstream_transport)
        self.assertClosed(self.transport)

    def test_valid_request_before_bad_data_still_forwarded(self):
        """
        A valid request followed by garbage in the same chunk is forwarded before the error reply.
        """
        self.protocol.dataReceived(encode() + b"\n]")
        self.assertEqual(self.transport.value(), b"")
        _, upstream_transport = complete_connection(self.reactor)
        self.assertEqual(upstream_transport.value(), b"tgmr")
        self.assertEqual(self.transport.value(), b"Error, bad request: expected a JSON object, got ']'")

    def test_truncated_then_lost(self):
        """
        A half-sent request followed by a disconnect gets no reply, no connection attempt and no error.
        """
        self.protocol.dataReceived(encode()[:20])
        self.transport.loseConnection()
        self.assertEqual(self.transport.value(), b"")
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertNoErrorsLogged()
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class IdleTimeoutTests(RelayTestCase):
    """
    Connections and exchanges without traffic for C{idle_timeout} seconds.
    """

    def test_idle_client_closed(self):
        """
        A client that sends nothing is closed after exactly the idle timeout.
        """
        self.reactor.advance(IDLE_TIMEOUT - 0.1)
        self.assertOpen(self.transport)
        self.reactor.advance(0.1)
        self.assertClosed(self.transport)
        self.assertEqual(self.transport.value(), b"")

    def test_idle_exchange_closed(self):
        """
        An exchange with no traffic closes both the client and the upstream connection.
        """
        _, upstream_transport = self.exchange()
        self.reactor.advance(IDLE_TIMEOUT)
        self.assertClosed(self.transport)
        self.assertClosed(upstream_transport)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_client_data_resets_timer(self):
        """
        Data from the client, even part of a request, restarts the idle timer.
        """
        self.reactor.advance(IDLE_TIMEOUT - 1)
        self.protocol.dataReceived(b"{")
        self.reactor.advance(IDLE_TIMEOUT - 1)
        self.assertOpen(self.transport)
        self.reactor.advance(1)
        self.assertClosed(self.transport)

    def test_upstream_data_resets_timer(self):
        """
        Reply data from the destination restarts the idle timer.
        """
        upstream, upstream_transport = self.exchange()
        self.reactor.advance(IDLE_TIMEOUT - 1)
        upstream.dataReceived(b"DONE")
        self.reactor.advance(IDLE_TIMEOUT - 1)
        self.assertOpen(self.transport)
        self.assertOpen(upstream_transport)
        self.reactor.advance(1)
        self.assertClosed(self.transport)
        self.assertClosed(upstream_transport)

    def test_idle_after_upstream_closed(self):
        """
        A client left idle after its exchange ended is closed after the timeout.
        """
        upstream, upstream_transport = self.exchange()
        upstream.dataReceived(b"DONE")
        upstream_transport.loseConnection()
        self.reactor.advance(IDLE_TIMEOUT)
        self.assertClosed(self.transport)
        self.assertEqual(self.transport.value(), b"DONE")

    def test_idle_while_connecting(self):
        """
        A timeout while the destination is still being dialled closes the client and stops the attempt.
        """
        factory = RelayFactory(
            reactor=self.reactor, rules=RuleSet(), idle_timeout=1.0, connect_timeout=CONNECT_TIMEOUT
        )
        protocol, transport = connect_client(factory)
        protocol.dataReceived(encode())
        self.reactor.advance(1.0)
        self.assertClosed(transport)
        self.assertTrue(self.reactor.connectors[-1].stoppedConnecting)
        self.assertNoErrorsLogged()

    def test_idle_logged(self):
        """
        Closing an idle client is logged with its address.
        """
        self.reactor.advance(IDLE_TIMEOUT)
        [event] = [e for e in self.relay_events() if e["log_format"] == "closing idle connection from {peer}"]
        self.assertEqual(event["peer"], "127.0.0.1:5555")


class ClientDisconnectTests(RelayTestCase):
    """
    The client leaving in the middle of an exchange.
    """

    def test_while_connecting_cancels_attempt(self):
        """
        A client that leaves while the destination is being dialled stops the attempt, quietly.
        """
        self.protocol.dataReceived(encode())
        self.transport.loseConnection()
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(self.transport.value(), b"")
        self.assertNoErrorsLogged()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_while_resolving_cancels_lookup(self):
        """
        A client that leaves while the destination's name is being resolved cancels the lookup.
        """
        lookup = Deferred()
        self.reactor.installNameResolver(FakeNameResolver({"example.org": lookup}))
        self.protocol.dataReceived(encode(server_ip="example.org"))
        self.transport.loseConnection()
        self.assertTrue(lookup.called)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertNoErrorsLogged()

    def test_connect_completing_after_close_sends_nothing(self):
        """
        A connection that completes after the client idled out sends nothing and is closed.
        """
        factory = make_factory(reactor=self.reactor)
        protocol = factory.buildProtocol(CLIENT)
        transport = StringTransport(peerAddress=CLIENT)
        protocol.makeConnection(transport)
        protocol.dataReceived(encode())
        self.reactor.advance(IDLE_TIMEOUT)
        self.assertTrue(transport.disconnecting)
        _, upstream_transport = complete_connection(self.reactor)
        self.assertEqual(upstream_transport.value(), b"")
        self.assertClosed(upstream_transport)

    def test_lookup_bounded_by_connect_timeout(self):
        """
        A destination's name is looked up with the connect timeout as its deadline: then the lookup is
        cancelled and the client told.
        """
        lookup = Deferred()
        self.reactor.installNameResolver(FakeNameResolver({"example.org": lookup}))
        self.protocol.dataReceived(encode(server_ip="example.org"))
        self.reactor.advance(CONNECT_TIMEOUT - 0.5)
        self.assertEqual(self.transport.value(), b"")
        self.reactor.advance(0.5)
        self.assertTrue(lookup.called)
        self.assertEqual(self.transport.value(),
                         b"Error, could not connect to example.org:8888: name lookup timed out")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_while_connected_closes_upstream(self):
        """
        A client that leaves during an exchange has its upstream connection closed.
        """
        _, upstream_transport = self.exchange()
        self.transport.loseConnection()
        self.assertClosed(upstream_transport)
        self.assertNoErrorsLogged()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_disconnect_leaves_connections(self):
        """
        A closed client no longer counts as an open connection.
        """
        self.assertEqual(self.factory.connections, {self.protocol})
        self.transport.loseConnection()
        self.assertEqual(self.factory.connections, set())


class ResolveTests(RelayTestCase):
    """
    Destinations named by host name.
    """

    def setUp(self):
        super().setUp()
        resolver = FakeNameResolver(lambda name: "127.0.0.1")
        self.lookups = resolver.asked
        self.reactor.installNameResolver(resolver)

    def test_name_resolved_and_dialled(self):
        """
        A host name is resolved and its address dialled.
        """
        self.protocol.dataReceived(encode(server_ip="Upstream.Example", server_port=8888))
        self.assertEqual(self.lookups, ["upstream.example"])
        [(host, port, _, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("127.0.0.1", 8888, CONNECT_TIMEOUT))
        _, upstream_transport = complete_connection(self.reactor)
        self.assertEqual(upstream_transport.value(), b"tgmr")

    def test_resolved_address_blocked(self):
        """
        A name that resolves to a blocked address gets C{Error, not allowed address} and no connection.
        """
        self.protocol.dataReceived(encode(server_ip="sneaky.example", server_port=7777))
        self.assertEqual(self.transport.value(), b"Error, not allowed address")
        self.assertClosed(self.transport)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_resolved_address_blocked_logged(self):
        """
        Blocking a resolved address is logged as a warning naming the client and the rule.
        """
        self.protocol.dataReceived(encode(server_ip="sneaky.example", server_port=7777))
        [event] = self.relay_events(LogLevel.warn)
        self.assertEqual(event["peer"], "127.0.0.1:5555")
        self.assertIn("127.0.0.1:7777", event["reason"])
        self.assertNoErrorsLogged()


class ThisHostTests(RelayTestCase):
    """
    The relay allows local destinations, but a loopback rule matches every spelling of this host.
    """

    rules = ("127.0.0.0/8",)

    def setUp(self):
        super().setUp()
        self.reactor.installNameResolver(name_resolver())

    def test_every_spelling_blocked(self):
        """Every spelling of this host, names that resolve there included, gets C{Error, not allowed address}."""
        for host in THIS_HOST:
            protocol, transport = connect_client(self.factory)
            protocol.dataReceived(encode(server_ip=host))
            self.assertEqual(transport.value(), NOT_ALLOWED, host)
            self.assertClosed(transport)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertNoErrorsLogged()

    def test_any_address_logged(self):
        """Blocking 0.0.0.0 is a warning saying it is this host and naming the rule."""
        self.protocol.dataReceived(encode(server_ip="0.0.0.0"))
        [event] = self.relay_events(LogLevel.warn)
        self.assertEqual(event["reason"], "is 0.0.0.0 (this host), blocked by rule 127.0.0.0/8")

    def test_local_allowed(self):
        """Without a rule against it, a local destination is relayed to."""
        factory = make_factory(rules=(), reactor=self.reactor)
        protocol, transport = connect_client(factory)
        protocol.dataReceived(encode(server_ip="0.0.0.0"))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("0.0.0.0", 8888))


class IPv6Tests(RelayTestCase):
    """
    IPv6 destinations: literals and names resolving to IPv6, matched by rules in every spelling.
    """

    rules = ("[::1]:7777",)

    def setUp(self):
        super().setUp()
        self.reactor.installNameResolver(name_resolver())

    def test_literal_relayed(self):
        """C{server_ip: "::1"} is connected to over IPv6 and gets the message text."""
        self.protocol.dataReceived(encode(server_ip="::1"))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("::1", 8888))
        _, upstream_transport = complete_connection(self.reactor)
        self.assertEqual(upstream_transport.value(), b"tgmr")

    def test_name_resolving_to_ipv6(self):
        """A name with only an IPv6 address is relayed to by that address."""
        self.protocol.dataReceived(encode(server_ip="loopback6.test"))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("::1", 8888))

    def test_rule_sees_every_spelling(self):
        """An IPv6 loopback rule with a port blocks every spelling of the address on that port, names included."""
        for host in ("::1", "[::1]", "0:0:0:0:0:0:0:1", "[::ffff:127.0.0.1]", "127.0.0.1", "0.0.0.0", "::",
                     "loopback6.test", "both.test", "mapped.test"):
            protocol, transport = connect_client(self.factory)
            protocol.dataReceived(encode(server_ip=host, server_port=7777))
            self.assertEqual(transport.value(), NOT_ALLOWED, host)
        self.assertEqual(self.reactor.tcpClients, [])
        self.assertNoErrorsLogged()

    def test_zone_refused(self):
        """A zone is a bad request, not a crash nor a lookup."""
        self.protocol.dataReceived(encode(server_ip="fe80::1%eth0"))
        self.assertEqual(self.transport.value(),
                         b"Error, bad request: server_ip must be an address without a zone (%eth0), got 'fe80::1%eth0'")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_ipv6_client_logged(self):
        """An IPv6 client is logged in brackets, as C{[::1]:5555}."""
        from twisted.internet.address import IPv6Address

        protocol, _ = connect_client(self.factory, IPv6Address("TCP", "::1", 5555))
        protocol.dataReceived(encode(server_ip="::1"))
        self.assertIn("[::1]:5555", [event.get("peer") for event in self.relay_events()])


class MaxConnectionsTests(SynchronousTestCase):
    """
    The bound on open client connections.
    """

    def test_limit(self):
        """
        Past C{max_connections} no protocol is built; a closed one frees a place.
        """
        factory = make_factory()
        factory.max_connections = 2
        # One client here, whose own limit would otherwise be a quarter of 2.
        factory.max_connections_per_client = 2
        _, first = connect_client(factory)
        connect_client(factory)
        self.assertIsNone(factory.buildProtocol(CLIENT))
        first.loseConnection()
        self.assertIsInstance(factory.buildProtocol(CLIENT), RelayProtocol)


class BackPressureTests(RelayTestCase):
    """
    Flow control between the client and the destination.
    """

    def test_paused_while_connecting(self):
        """
        The client is not read from while the destination is being dialled.
        """
        self.assertEqual(self.transport.producerState, "producing")
        self.protocol.dataReceived(encode())
        self.assertEqual(self.transport.producerState, "paused")

    def test_resumed_after_connect(self):
        """
        Reading from the client resumes once the destination is connected.
        """
        self.exchange()
        self.assertEqual(self.transport.producerState, "producing")

    def test_upstream_is_producer_of_client(self):
        """
        The upstream transport is registered as a streaming producer on the client transport.
        """
        _, upstream_transport = self.exchange()
        self.assertIs(self.transport.producer, upstream_transport)
        self.assertTrue(self.transport.streaming)

    def test_producer_unregistered_when_upstream_closes(self):
        """
        When the destination closes, it is no longer the client's producer.
        """
        _, upstream_transport = self.exchange()
        upstream_transport.loseConnection()
        self.assertIsNone(self.transport.producer)

    def test_producer_follows_exchange(self):
        """
        The next exchange's upstream replaces the previous one as producer.
        """
        self.exchange()
        _, second_transport = self.exchange(encode(message="again"))
        self.assertIs(self.transport.producer, second_transport)


class _Collector(Protocol):
    """
    A peer that records what it receives and whether it was disconnected.
    """

    def __init__(self, reply=None):
        self.reply = reply
        self.received = b""
        self.lost = False

    def dataReceived(self, data):
        self.received += data
        if self.reply is not None:
            self.transport.write(self.reply)

    def connectionLost(self, reason):
        self.lost = True


class EndToEndTests(SynchronousTestCase):
    """
    A client, the relay and a destination talking over in-memory connections.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.factory = make_factory(reactor=self.reactor)
        self.servers = []

        def build_server():
            server = _Collector(reply=b"DONE")
            self.servers.append(server)
            return server

        self.reactor.listenTCP(8888, Factory.forProtocol(build_server), interface="127.0.0.1")

    def connect_client(self):
        """
        Connect a client to the relay.

        :returns: the client protocol and the pump between it and the relay.
        """
        client = _Collector()
        relay = self.factory.buildProtocol(CLIENT)
        pump = iosim.connect(
            relay,
            iosim.FakeTransport(relay, isServer=True, peerAddress=CLIENT),
            client,
            iosim.FakeTransport(client, isServer=False),
            clock=self.reactor,
        )
        return client, pump

    def test_exchange(self):
        """
        A request sent with no newline is answered with the destination's exact reply, and the client can leave.
        """
        client, client_pump = self.connect_client()
        client.transport.write(encode())
        client_pump.flush()
        server_pump = iosim.ConnectionCompleter(self.reactor).succeedOnce()
        server_pump.flush()
        client_pump.flush()
        [server] = self.servers
        self.assertEqual(server.received, b"tgmr")
        self.assertEqual(client.received, b"DONE")
        self.assertFalse(server.lost)
        client.transport.loseConnection()
        client_pump.flush()
        server_pump.flush()
        self.assertTrue(server.lost)

    def test_two_requests(self):
        """
        Two requests on one connection are two exchanges; the first server is disconnected by the second.
        """
        client, client_pump = self.connect_client()
        completer = iosim.ConnectionCompleter(self.reactor)
        client.transport.write(encode(message="one") + b"\n")
        client_pump.flush()
        first_pump = completer.succeedOnce()
        first_pump.flush()
        client_pump.flush()
        client.transport.write(encode(message="two") + b"\n")
        client_pump.flush()
        first_pump.flush()
        second_pump = completer.succeedOnce()
        second_pump.flush()
        client_pump.flush()
        self.assertEqual([s.received for s in self.servers], [b"one", b"two"])
        self.assertEqual([s.lost for s in self.servers], [True, False])
        self.assertEqual(client.received, b"DONEDONE")

    def test_blocked(self):
        """
        A blocked request reaches the client as the exact refusal and the client is disconnected.
        """
        client, client_pump = self.connect_client()
        client.transport.write(encode(server_port=7777))
        client_pump.flush()
        self.assertEqual(client.received, b"Error, not allowed address")
        self.assertTrue(client.lost)
        self.assertEqual(self.reactor.tcpClients, [])


class ShutdownTests(RelayTestCase):
    """
    A graceful shutdown lets the exchange in flight finish and starts no new one.
    """

    def test_idle_client_closed_at_once(self):
        """A client with no exchange in flight is closed at once."""
        self.protocol.close_when_idle()
        self.assertClosed(self.transport)

    def test_exchange_in_flight_finishes(self):
        """A client whose exchange is in flight gets the whole reply, then is closed."""
        upstream, upstream_transport = self.exchange()
        self.protocol.close_when_idle()
        self.assertOpen(self.transport)
        upstream.dataReceived(b"DONE")
        self.assertOpen(self.transport)
        upstream_transport.loseConnection()
        self.assertEqual(self.transport.value(), b"DONE")
        self.assertClosed(self.transport)

    def test_no_new_request_while_stopping(self):
        """A request that arrives during the shutdown opens no connection."""
        self.exchange()
        self.protocol.close_when_idle()
        self.protocol.dataReceived(encode(server_port=9999))
        self.assertEqual(len(self.reactor.tcpClients), 1)


class HalfCloseTests(RelayTestCase):
    """
    A client that half-closes after its request still gets the reply.
    """

    def test_reply_then_closed(self):
        """The exchange runs to its end after the client's half-close, then the client is closed."""
        upstream, upstream_transport = self.exchange()
        upstream_transport.loseWriteConnection = lambda: None
        self.protocol.readConnectionLost()
        self.assertOpen(self.transport)
        upstream.dataReceived(b"DONE")
        upstream_transport.loseConnection()
        self.assertEqual(self.transport.value(), b"DONE")
        self.assertClosed(self.transport)

    def test_request_in_same_segment_as_fin(self):
        """A request whose connection attempt starts as the client half-closes is forwarded, then its end."""
        self.protocol.dataReceived(encode())
        self.protocol.readConnectionLost()
        _, upstream_transport = complete_connection(self.reactor)
        self.assertEqual(upstream_transport.value(), b"tgmr")
        self.assertClosed(upstream_transport)

    def test_end_passed_on(self):
        """The client's end of input is passed on to the destination as a half-close."""
        upstream, upstream_transport = self.exchange()
        half_closed = []
        upstream_transport.loseWriteConnection = lambda: half_closed.append(True)
        self.protocol.readConnectionLost()
        self.assertEqual(half_closed, [True])
        self.assertOpen(upstream_transport)
