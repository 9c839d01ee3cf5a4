"""
Tests for L{netproxy.message.reverse}: server setups and client data messages on one
port, the lifeline rule for setup connections, round-robin forwarding with
failover, bad input, and one exchange end to end in memory (send client,
reverse proxy and backend server over L{twisted.test.iosim}).
"""

import io
import json

from twisted.internet import error
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP4ServerEndpoint
from twisted.internet.testing import (
    EventLoggingObserver,
    MemoryReactorClock,
    StringTransportWithDisconnection,
)
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.message.backend import BackendService
from netproxy.message.forwarder import Forwarder
from netproxy.message.codec import encode_message
from netproxy.message.fields import sha1_hex
from netproxy.errors import too_many_servers
from netproxy.message.registry import ServerRegistry
from netproxy.message.reverse import ReverseFactory
from netproxy.message.send_client import send_packets
from netproxy.testing import complete_connection, fail_connection

CLIENT = IPv4Address("TCP", "127.0.0.1", 5555)
SERVER_HOST = IPv4Address("TCP", "10.0.0.7", 40001)
SERVER_NETWORKS = RuleSet([parse_rule("10.0.0.0/8"), parse_rule("127.0.0.0/8")])
CONNECT_TIMEOUT = 3.0
ANSWER_TIMEOUT = 10.0
IDLE_TIMEOUT = 30.0
SETUP_GRACE = 1.0


def setup(server_id=100, policy="PP_1", port=124, **fields):
    """
    :returns: a type 1 setup message, as bytes with no newline.
    """
    message = {"type": 1, "id": server_id, "privPolyId": policy, "listenport": port}
    message.update(fields)
    return json.dumps(message).encode("utf-8")


def data(payload="hello", **fields):
    """
    :returns: the type 0 data message of client 50 for PP_1, as a dict.
    """
    message = {"type": 0, "srcid": 50, "privPoliId": "PP_1", "payloadsize": len(payload), "payload": payload}
    message.update(fields)
    return message


def ack(payload="hello", server_id=100, spacing=" "):
    """
    :returns: the raw bytes of a server's ack for C{payload}, written with
        unusual spacing, so that a rewrite would show.
    """
    return (f'{{"type":2,{spacing}"srcid":{server_id},"destid":50,"payloadsize":40,'
            f'"payload":"{sha1_hex(payload)}"}}').encode("ascii")


def replies(transport):
    """
    :returns: the lines written to C{transport}, decoded.
    """
    value = transport.value()
    assert value.endswith(b"\n") or not value, value
    return [json.loads(line) for line in value.splitlines()]


class ReverseTestCase(SynchronousTestCase):
    """
    A reverse proxy on a L{MemoryReactorClock}, with a log observer.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.registry = ServerRegistry(self.reactor)
        self.forwarder = Forwarder(self.reactor, self.registry, CONNECT_TIMEOUT, ANSWER_TIMEOUT, 64 * 1024)
        # Servers here live on another host (SERVER_HOST), allowed to register.
        self.factory = ReverseFactory(self.reactor, self.registry, self.forwarder, IDLE_TIMEOUT, SETUP_GRACE,
                                      allow_servers=SERVER_NETWORKS)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def connect(self, peer=CLIENT):
        """
        Connect a peer to the reverse proxy.

        :returns: the reverse protocol and its transport.
        """
        protocol = self.factory.buildProtocol(peer)
        transport = StringTransportWithDisconnection(peerAddress=peer)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        # A forward left in flight would be closed by the garbage collector
        # in some later test; leaving cancels it now.
        self.addCleanup(transport.loseConnection)
        return protocol, transport

    def register(self, server_id=100, port=124, policy="PP_1", peer=SERVER_HOST, close=True):
        """
        Register a server through a setup connection, closed at once unless
        C{close} is false.

        :returns: the setup connection's protocol and transport.
        """
        protocol, transport = self.connect(peer)
        protocol.dataReceived(setup(server_id, policy, port))
        if close:
            transport.loseConnection()
        return protocol, transport

    def send(self, protocol, message):
        """
        Have the client send C{message} as one JSON line.
        """
        protocol.dataReceived(json.dumps(message).encode("utf-8") + b"\n")

    def lines(self, level=None):
        """
        :returns: the formatted log lines of netproxy, at C{level} if given.
        """
        return [formatEvent(event) for event in self.events
                if event.get("log_namespace", "").startswith("netproxy.")
                and (level is None or event["log_level"] == level)]

    def assertNoErrorsLogged(self):
        """
        Assert that nothing was logged at error level or above, and no failure.
        """
        bad = [e for e in self.events if e["log_level"] in (LogLevel.error, LogLevel.critical)]
        self.assertEqual(bad, [])
        self.assertEqual(self.flushLoggedErrors(), [])


class SetupTests(ReverseTestCase):
    """
    Type 1 messages register servers.
    """

    def test_records_server(self):
        """A setup records the id, policy, the host it came from and the listen port."""
        self.register()
        [server] = self.registry.servers("PP_1")
        self.assertEqual((server.server_id, server.policy, server.host, server.port),
                         (100, "PP_1", "10.0.0.7", 124))

    def test_tolerant_fields(self):
        """String type, id and port and the privPoliId spelling are accepted."""
        protocol, _ = self.connect(SERVER_HOST)
        protocol.dataReceived(json.dumps(
            {"type": "1", "id": "7", "privPoliId": "PP_2", "listenport": "9000"}).encode("utf-8"))
        [server] = self.registry.servers("PP_2")
        self.assertEqual((server.server_id, server.port), ("7", 9000))

    def test_log_line(self):
        """The setup is logged in the fixed wording the README documents."""
        self.register()
        self.assertEqual(self.lines(LogLevel.info)[0],
                         "Receiving setup message from server id 100 privacy policy PP_1 port 124")

    def test_no_reply_no_probe(self):
        """A setup gets no reply and the server is never probed or connected to at setup time."""
        _, transport = self.register(close=False)
        self.reactor.advance(SETUP_GRACE * 5)
        self.assertEqual(transport.value(), b"")
        self.assertEqual(self.reactor.tcpClients, [])

    def test_reregistration_replaces(self):
        """A server registering again with the same id from the same host replaces its entry."""
        self.register(port=124)
        self.register(port=200, peer=IPv4Address("TCP", "10.0.0.7", 1))
        [server] = self.registry.servers("PP_1")
        self.assertEqual((server.host, server.port), ("10.0.0.7", 200))

    def test_closed_within_grace_stays(self):
        """A setup connection closed within setup_grace leaves the server registered, then and later."""
        _, transport = self.register(close=False)
        self.reactor.advance(SETUP_GRACE - 0.01)
        transport.loseConnection()
        self.reactor.advance(100)
        self.assertEqual([s.server_id for s in self.registry.servers("PP_1")], [100])

    def test_lifeline_removed_on_close(self):
        """A setup connection kept open past setup_grace is a lifeline: closing it removes the server."""
        _, transport = self.register(close=False)
        self.reactor.advance(SETUP_GRACE)
        self.assertEqual(len(self.registry.servers("PP_1")), 1)
        transport.loseConnection()
        self.assertEqual(self.registry.servers("PP_1"), [])
        self.assertIn("removed server id 100 of privacy policy PP_1: its registration connection closed",
                      self.lines(LogLevel.info))

    def test_lifeline_not_idle_timed_out(self):
        """A lifeline stays open however long it is quiet."""
        _, transport = self.register(close=False)
        self.reactor.advance(IDLE_TIMEOUT * 10)
        self.assertTrue(transport.connected)
        self.assertEqual(len(self.registry.servers("PP_1")), 1)

    def test_replaced_lifeline_keeps_new_entry(self):
        """The old lifeline of a server that registered again does not remove the new entry when it closes."""
        _, old = self.register(close=False)
        self.reactor.advance(SETUP_GRACE)
        self.register(port=200)
        old.loseConnection()
        [server] = self.registry.servers("PP_1")
        self.assertEqual(server.port, 200)

    def test_setup_then_data_on_other_connection(self):
        """A server that registers later joins the rotation."""
        self.register(100, 124)
        client, _ = self.connect()
        self.send(client, data())
        complete_connection(self.reactor)[0].dataReceived(ack())
        self.register(101, 125)
        for _ in range(2):
            self.send(client, data())
            complete_connection(self.reactor)[0].dataReceived(ack())
        self.assertEqual([c[1] for c in self.reactor.tcpClients], [124, 125, 124])

    def test_bad_setup(self):
        """A setup with a bad listen port gets a type 3 error and is closed, registering nothing."""
        protocol, transport = self.connect(SERVER_HOST)
        protocol.dataReceived(setup(port=70000))
        self.assertEqual(replies(transport), [{
            "type": 3, "error": "bad message: listenport must be from 1 to 65535, got 70000", "privPolyId": "PP_1"}])
        self.assertFalse(transport.connected)
        self.assertEqual(self.registry.servers(), [])


class RegistrationTrustTests(ReverseTestCase):
    """
    Who may register servers, whose an id is, and how many servers a host
    and the whole proxy may hold.
    """

    def assertSetupRefused(self, transport, error, policy="PP_1"):
        """
        The peer got one type 3 error line saying C{error} and the connection is closed.
        """
        self.assertEqual(replies(transport), [{"type": 3, "error": error, "privPolyId": policy}])
        self.assertFalse(transport.connected)

    def test_default_allows_loopback_only(self):
        """By default only loopback hosts register; another host gets a type 3 error, a warning, and is not recorded."""
        self.factory = ReverseFactory(self.reactor, self.registry, self.forwarder, IDLE_TIMEOUT, SETUP_GRACE)
        _, transport = self.register(close=False)
        self.assertSetupRefused(transport, "setup refused: 10.0.0.7 may not register servers")
        self.assertEqual(self.registry.servers(), [])
        self.assertEqual(self.lines(LogLevel.warn),
                         ["refused setup from 10.0.0.7:40001: 10.0.0.7 is not in --allow-servers"])
        peers = [IPv4Address("TCP", "127.0.0.1", 1), IPv4Address("TCP", "127.9.9.9", 1),
                 IPv6Address("TCP", "::1", 1), IPv6Address("TCP", "::ffff:127.0.0.1", 1)]
        for server_id, peer in enumerate(peers):
            _, transport = self.register(server_id, peer=peer, close=False)
            self.assertEqual(transport.value(), b"")
        self.assertEqual([s.host for s in self.registry.servers()], ["127.0.0.1", "127.9.9.9", "::1", "127.0.0.1"])

    def test_unix_socket_counts_as_loopback(self):
        """A setup over a Unix socket is from this host: allowed by default, dialled at 127.0.0.1."""
        self.factory = ReverseFactory(self.reactor, self.registry, self.forwarder, IDLE_TIMEOUT, SETUP_GRACE)
        self.register(peer=UNIXAddress(None))
        [server] = self.registry.servers()
        self.assertEqual(server.address, "127.0.0.1:124")

    def test_mapped_outsider_refused(self):
        """An outside host spelt as an IPv4-mapped address is refused like its IPv4 form."""
        self.factory.allow_servers = RuleSet([parse_rule("127.0.0.0/8")])
        _, transport = self.register(peer=IPv6Address("TCP", "::ffff:10.0.0.7", 1), close=False)
        self.assertSetupRefused(transport, "setup refused: 10.0.0.7 may not register servers")

    def test_data_from_anywhere(self):
        """--allow-servers concerns setups only: a client on another host is still served."""
        self.factory = ReverseFactory(self.reactor, self.registry, self.forwarder, IDLE_TIMEOUT, SETUP_GRACE)
        self.register(peer=IPv4Address("TCP", "127.0.0.1", 1))
        client, transport = self.connect(IPv4Address("TCP", "192.0.2.9", 1))
        self.send(client, data())
        complete_connection(self.reactor)[0].dataReceived(ack())
        self.assertEqual(replies(transport)[0]["type"], 2)

    def test_impostor_refused(self):
        """A setup for a held id from another host is refused with a warning; the holder keeps every message."""
        _, lifeline = self.register(close=False)
        self.reactor.advance(SETUP_GRACE)
        _, transport = self.register(port=666, peer=IPv4Address("TCP", "10.0.0.8", 4444), close=False)
        self.assertSetupRefused(transport, "setup refused: server id 100 is registered from another host")
        self.assertIn("refused setup from 10.0.0.8:4444: server id 100 is held by 10.0.0.7:124, registered from "
                      "another host", self.lines(LogLevel.warn))
        self.assertTrue(lifeline.connected)
        client, _ = self.connect()
        for n in range(3):
            self.send(client, data(f"message {n}"))
            self.assertEqual(self.reactor.tcpClients[-1][:2], ("10.0.0.7", 124))
            complete_connection(self.reactor)[0].dataReceived(ack(f"message {n}"))
        self.assertEqual(len(self.reactor.tcpClients), 3)

    def test_impostor_refused_after_holder_restart(self):
        """The holder's own restart (same host, new port) replaces it, and is logged with both addresses."""
        _, old = self.register(close=False)
        self.reactor.advance(SETUP_GRACE)
        self.register(port=200, peer=IPv4Address("TCP", "10.0.0.7", 40002), close=False)
        self.assertIn("server id 100 at 10.0.0.7:124 of privacy policy PP_1 displaced by a new setup for "
                      "10.0.0.7:200 of privacy policy PP_1", self.lines(LogLevel.warn))
        old.loseConnection()
        [server] = self.registry.servers()
        self.assertEqual(server.port, 200)

    def test_id_free_once_lifeline_closes(self):
        """Once the holder's lifeline closes, another host may register the id."""
        _, lifeline = self.register(close=False)
        self.reactor.advance(SETUP_GRACE)
        lifeline.loseConnection()
        _, transport = self.register(port=300, peer=IPv4Address("TCP", "10.0.0.8", 1), close=False)
        self.assertEqual(transport.value(), b"")
        [server] = self.registry.servers()
        self.assertEqual(server.address, "10.0.0.8:300")

    def test_flood_on_one_connection(self):
        """2,000 setups on one connection keep 64 servers; the 65th gets a type 3 error and the rest are not read."""
        protocol, transport = self.connect(SERVER_HOST)
        protocol.dataReceived(b"\n".join(setup(n, port=1024 + n) for n in range(2000)))
        self.assertSetupRefused(transport, "setup refused: 64 servers are registered from 10.0.0.7, the most per host")
        self.assertEqual(len(self.registry.servers()), 64)
        self.assertEqual(self.lines(LogLevel.warn),
                         ["refused setup from 10.0.0.7:40001: --max-servers-per-host 64 reached by 10.0.0.7"])
        self.assertEqual(len(protocol.registrations), 64)

    def test_flood_from_many_hosts(self):
        """Setups from many hosts stop at the total limit."""
        self.registry.max_servers = 5
        for n in range(5):
            self.register(n, peer=IPv4Address("TCP", f"10.0.1.{n}", 1))
        _, transport = self.register(99, peer=IPv4Address("TCP", "10.0.2.1", 1), close=False)
        self.assertSetupRefused(transport, "setup refused: 5 servers are registered, the most allowed")
        self.assertEqual(len(self.registry.servers()), 5)

    def test_same_setup_repeated_on_one_connection(self):
        """A connection repeating one server's setup holds one registration, and closing its lifeline removes it."""
        protocol, transport = self.connect(SERVER_HOST)
        protocol.dataReceived(b"\n".join(setup(100, port=1024 + n) for n in range(1000)))
        self.assertEqual(list(protocol.registrations), ["100"])
        self.reactor.advance(SETUP_GRACE)
        transport.loseConnection()
        self.assertEqual(self.registry.servers(), [])

    def test_refused_string_fields(self):
        """A refused setup's error copies the types and policy spelling the server used."""
        self.factory.allow_servers = RuleSet()
        protocol, transport = self.connect(SERVER_HOST)
        protocol.dataReceived(json.dumps({"type": "1", "id": "7", "privPoliId": "PP_2", "listenport": "9"}).encode())
        self.assertEqual(replies(transport), [{"type": "3", "error": "setup refused: 10.0.0.7 may not register servers",
                                               "privPoliId": "PP_2"}])


class DataTests(ReverseTestCase):
    """
    Type 0 messages go to the servers of their policy and the answers back.
    """

    def setUp(self):
        super().setUp()
        self.register(100, 124)
        self.register(101, 125)
        self.protocol, self.transport = self.connect()

    def test_forwarded_with_every_field(self):
        """The message reaches the server with every field the client sent, payloadsize and unknown ones too."""
        message = data(payloadsize=999, note={"x": [1, "y"]}, srcid="50")
        self.send(self.protocol, message)
        [(host, port, _, timeout, _)] = self.reactor.tcpClients
        self.assertEqual((host, port, timeout), ("10.0.0.7", 124, CONNECT_TIMEOUT))
        _, upstream = complete_connection(self.reactor)
        self.assertEqual(json.loads(upstream.value()), message)

    def test_answer_byte_for_byte(self):
        """The answer reaches the client in one write, exactly as the server wrote it, plus a newline."""
        writes = []
        self.transport.write = writes.append
        self.send(self.protocol, data())
        complete_connection(self.reactor)[0].dataReceived(ack(spacing="   "))
        self.assertEqual(writes, [ack(spacing="   ") + b"\n"])

    def test_upstream_closed_after_answer(self):
        """The connection to the server is closed once its answer is read."""
        self.send(self.protocol, data())
        protocol, upstream = complete_connection(self.reactor)
        protocol.dataReceived(ack())
        self.assertFalse(upstream.connected)
        self.assertTrue(self.transport.connected)

    def test_paused_while_messages_wait(self):
        """The client transport is paused while a message waits behind the one in flight, and resumed after the answer."""
        self.send(self.protocol, data("a"))
        self.send(self.protocol, data("b"))
        self.assertEqual(self.transport.producerState, "paused")
        complete_connection(self.reactor)[0].dataReceived(ack("a"))
        # "b" is in flight now, and nothing waits behind it.
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(len(self.reactor.tcpClients), 2)

    def test_paused_when_more_arrives_in_flight(self):
        """A message arriving while one is in flight waits, and pauses the transport until the answer."""
        self.send(self.protocol, data("a"))
        self.assertEqual(self.transport.producerState, "producing")
        self.send(self.protocol, data("b"))
        self.assertEqual(self.transport.producerState, "paused")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        complete_connection(self.reactor)[0].dataReceived(ack("a"))
        self.assertEqual(self.transport.producerState, "producing")
        self.assertEqual(json.loads(complete_connection(self.reactor)[1].value())["payload"], "b")

    def test_message_passed_on_as_it_came(self):
        """A client's message on one line reaches the server byte for byte, with a newline."""
        raw = b'{"payload":"h\\u00e9llo" , "privPoliId":"PP_1","srcid":"50","type":0,"extra":{"n":1.50}}'
        self.protocol.dataReceived(raw + b"\r\n")
        self.assertEqual(complete_connection(self.reactor)[1].value(), raw + b"\n")

    def test_pipelined_messages_passed_on(self):
        """Messages sent together each reach the server with every field they had, one line each."""
        first, second = data("a", extra=[1]), data("b", srcid="7")
        self.protocol.dataReceived(json.dumps(first).encode() + json.dumps(second, indent=2).encode())
        protocol, upstream = complete_connection(self.reactor)
        self.assertEqual(upstream.value(), encode_message(first))
        protocol.dataReceived(ack("a"))
        self.assertEqual(complete_connection(self.reactor)[1].value(), encode_message(second))

    def test_lone_message_not_paused(self):
        """A client waiting for its answer is not paused: nothing waits to be read."""
        self.send(self.protocol, data())
        self.assertEqual(self.transport.producerState, "producing")
        complete_connection(self.reactor)[0].dataReceived(ack())
        self.assertEqual(self.transport.producerState, "producing")

    def test_many_messages_in_order(self):
        """Messages sent together are forwarded one at a time and answered in order."""
        self.protocol.dataReceived(b"".join(encode_message(data(p)) for p in ("a", "b", "c")))
        answered = []
        for payload in ("a", "b", "c"):
            self.assertEqual(len(self.reactor.tcpClients), len(answered) + 1)
            protocol, upstream = complete_connection(self.reactor)
            self.assertEqual(json.loads(upstream.value())["payload"], payload)
            protocol.dataReceived(ack(payload))
            answered.append(payload)
        self.assertEqual([r["payload"] for r in replies(self.transport)], [sha1_hex(p) for p in "abc"])

    def test_round_robin(self):
        """Five messages over servers 100 and 101 go 100, 101, 100, 101, 100."""
        for _ in range(5):
            self.send(self.protocol, data())
            complete_connection(self.reactor)[0].dataReceived(ack())
        self.assertEqual([c[1] for c in self.reactor.tcpClients], [124, 125, 124, 125, 124])

    def test_round_robin_concurrent(self):
        """Six messages from six clients in flight at once split 3/3 over two servers."""
        for _ in range(6):
            self.send(self.connect()[0], data())
        self.assertEqual(sorted(c[1] for c in self.reactor.tcpClients), [124] * 3 + [125] * 3)

    def test_log_lines(self):
        """A forwarded message is logged with its four documented lines, in order."""
        self.send(self.protocol, data())
        complete_connection(self.reactor)[0].dataReceived(ack())
        digest = sha1_hex("hello")
        self.assertEqual(self.lines(LogLevel.info)[-4:], [
            "Received a data message from client 50 privacy policy PP_1 payload: hello",
            "Forwarding a data message to server id 100 payload: hello",
            "Received a data message from server id 100 payload: " + digest,
            "Forwarding a data message to client id 50 payload: " + digest,
        ])

    def test_idle_timeout(self):
        """A client connection quiet for the idle timeout is closed."""
        self.reactor.advance(IDLE_TIMEOUT)
        self.assertFalse(self.transport.connected)

    def test_no_idle_timeout_while_waiting(self):
        """A client waiting for a slow failover is not closed as idle."""
        self.forwarder.answer_timeout = IDLE_TIMEOUT
        self.send(self.protocol, data())
        complete_connection(self.reactor)
        self.reactor.advance(IDLE_TIMEOUT)
        protocol, _ = complete_connection(self.reactor)
        self.reactor.advance(IDLE_TIMEOUT - 1)
        self.assertTrue(self.transport.connected)
        protocol.dataReceived(ack(server_id=101))
        self.assertEqual(self.transport.value(), ack(server_id=101) + b"\n")

    def test_many_immediate_answers(self):
        """Hundreds of pipelined messages answered at once (no server) are all answered, in one pass."""
        message = encode_message(data(privPoliId="PP_9"))
        self.protocol.dataReceived(message * 600)
        self.assertEqual(len(replies(self.transport)), 600)
        self.assertTrue(self.transport.connected)
        self.assertNoErrorsLogged()


class FailoverTests(ReverseTestCase):
    """
    A server that gives no usable answer is marked down and the message goes
    to the next, unseen by the client.
    """

    def setUp(self):
        super().setUp()
        self.register(100, 124)
        self.register(101, 125)
        self.protocol, self.transport = self.connect()
        self.send(self.protocol, data())

    def assertFailedOver(self):
        """
        Assert that the message went on to server 101, whose answer is all
        the client sees, and that server 100 is down.
        """
        self.assertEqual(self.reactor.tcpClients[-1][1], 125)
        complete_connection(self.reactor)[0].dataReceived(ack(server_id=101))
        self.assertEqual(self.transport.value(), ack(server_id=101) + b"\n")
        self.assertTrue(self.transport.connected)
        self.assertIsNotNone(self.registry.servers("PP_1")[0].retry_at)

    def test_refused(self):
        """A refusing server fails over."""
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertFailedOver()

    def test_connect_timeout(self):
        """A server that does not accept within connect_timeout fails over."""
        self.assertEqual(self.reactor.tcpClients[-1][3], CONNECT_TIMEOUT)
        fail_connection(self.reactor, error.TimeoutError())
        self.assertFailedOver()

    def test_answer_timeout(self):
        """A server that does not answer within answer_timeout fails over."""
        complete_connection(self.reactor)
        self.reactor.advance(ANSWER_TIMEOUT - 0.5)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reactor.advance(0.5)
        self.assertFailedOver()

    def test_closed_without_answer(self):
        """A server that closes without answering fails over."""
        complete_connection(self.reactor)[1].loseConnection()
        self.assertFailedOver()

    def test_malformed_answer(self):
        """A server that answers malformed JSON fails over."""
        complete_connection(self.reactor)[0].dataReceived(b'{"type": 2, "payload": }')
        self.assertFailedOver()

    def test_all_down(self):
        """When every server fails the client gets one type 3 error line and may send again."""
        fail_connection(self.reactor, error.ConnectionRefusedError())
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertEqual(self.transport.value(), encode_message(
            {"type": 3, "error": "all servers of privacy policy PP_1 are down", "privPoliId": "PP_1"}))
        self.assertTrue(self.transport.connected)
        self.assertEqual(self.transport.producerState, "producing")

    def test_all_down_string_type_and_spelling(self):
        """The error copies the client's policy key spelling and string type."""
        fail_connection(self.reactor, error.ConnectionRefusedError())
        complete_connection(self.reactor)[0].dataReceived(ack(server_id=101))
        self.transport.clear()
        message = {"type": "0", "srcid": "50", "privPolyId": "PP_1", "payload": "x"}
        self.send(self.protocol, message)
        fail_connection(self.reactor, error.ConnectionRefusedError())
        fail_connection(self.reactor, error.ConnectionRefusedError())
        self.assertEqual(replies(self.transport), [
            {"type": "3", "error": "all servers of privacy policy PP_1 are down", "privPolyId": "PP_1"}])

    def test_down_server_rejoins(self):
        """After the back-off the down server is tried again, and rejoins the rotation when it answers."""
        fail_connection(self.reactor, error.ConnectionRefusedError())
        complete_connection(self.reactor)[0].dataReceived(ack(server_id=101))
        # Within the back-off only 101 is tried.
        self.send(self.protocol, data())
        self.assertEqual(self.reactor.tcpClients[-1][1], 125)
        complete_connection(self.reactor)[0].dataReceived(ack(server_id=101))
        self.reactor.advance(1.0)
        for _ in range(3):
            self.send(self.protocol, data())
            complete_connection(self.reactor)[0].dataReceived(ack())
        self.assertEqual([c[1] for c in self.reactor.tcpClients], [124, 125, 125, 124, 125, 124])
        self.assertEqual([s.retry_at for s in self.registry.servers("PP_1")], [None, None])


    def test_programming_error_logged(self):
        """A programming error while forwarding is logged as a failure with its traceback, not as a server down."""
        fail_connection(self.reactor, ZeroDivisionError("a bug"))
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual([s.retry_at for s in self.registry.servers("PP_1")], [None, None])
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertFalse(self.transport.connected)


class NoServerTests(ReverseTestCase):
    """
    A policy nobody serves.
    """

    def test_unknown_policy(self):
        """A message for an unknown policy gets a type 3 error line, and the connection stays open."""
        protocol, transport = self.connect()
        self.send(protocol, data(privPoliId="PP_9"))
        self.assertEqual(replies(transport), [
            {"type": 3, "error": "no server registered for privacy policy PP_9", "privPoliId": "PP_9"}])
        self.assertTrue(transport.connected)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_removed_server(self):
        """Once a policy's only lifeline closes, its messages get the type 3 error."""
        _, lifeline = self.register(close=False)
        self.reactor.advance(SETUP_GRACE)
        lifeline.loseConnection()
        protocol, transport = self.connect()
        self.send(protocol, data())
        self.assertEqual(replies(transport)[0]["type"], 3)


class BadInputTests(ReverseTestCase):
    """
    Bad input gets a type 3 error line and the connection is closed.
    """

    def refused(self, raw):
        """
        Send C{raw} on a new connection.

        :returns: the single reply, after asserting that the connection was closed.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(raw)
        self.assertFalse(transport.connected)
        [reply] = replies(transport)
        return reply

    def test_malformed_json(self):
        """Malformed JSON is refused."""
        self.assertEqual(self.refused(b'{"type": 0,}'), {
            "type": 3, "error": "bad message: malformed JSON: Expecting property name enclosed in double quotes "
            "at column 12", "privPoliId": None})

    def test_not_an_object(self):
        """A JSON value that is not an object is refused."""
        self.assertEqual(self.refused(b"[1, 2]")["error"], "bad message: expected a JSON object, got '['")

    def test_oversized(self):
        """A message over 64 KiB is refused."""
        raw = json.dumps(data("x" * (64 * 1024))).encode("utf-8")
        self.assertEqual(self.refused(raw)["error"], "bad message: message larger than 65536 bytes")

    def test_unknown_type(self):
        """Type 7 is refused, with the client's policy."""
        self.assertEqual(self.refused(json.dumps(data(type=7)).encode("utf-8")), {
            "type": 3, "error": "bad message: unknown message type 7", "privPoliId": "PP_1"})

    def test_ack_from_client(self):
        """A type 2 message from a client is refused."""
        self.assertEqual(self.refused(json.dumps(data(type=2)).encode("utf-8"))["error"],
                         "bad message: message type 2 is not sent to the reverse proxy")

    def test_error_from_client(self):
        """A type 3 message from a client is refused, with its string type copied."""
        reply = self.refused(json.dumps(data(type="3")).encode("utf-8"))
        self.assertEqual((reply["type"], reply["error"]),
                         ("3", "bad message: message type '3' is not sent to the reverse proxy"))

    def test_missing_field(self):
        """A data message without a payload is refused, naming the field."""
        message = data()
        del message["payload"]
        self.assertEqual(self.refused(json.dumps(message).encode("utf-8"))["error"],
                         "bad message: missing field 'payload'")

    def test_missing_type(self):
        """A message without a type is refused."""
        self.assertEqual(self.refused(b'{"srcid": 50}')["error"], "bad message: missing field 'type'")

    def test_logged_as_warning(self):
        """Bad input is logged as a warning with the peer's address, nothing worse."""
        self.refused(b"{nope}")
        [line] = self.lines(LogLevel.warn)
        self.assertTrue(line.startswith("bad message from 127.0.0.1:5555: malformed JSON"), line)
        self.assertNoErrorsLogged()

    def test_earlier_message_answered_first(self):
        """A message before the bad input is answered before the error and the close."""
        self.register()
        protocol, transport = self.connect()
        protocol.dataReceived(encode_message(data()) + b"{bad}")
        self.assertTrue(transport.connected)
        complete_connection(self.reactor)[0].dataReceived(ack())
        value = transport.value()
        self.assertTrue(value.startswith(ack() + b"\n"), value)
        self.assertEqual(json.loads(value[len(ack()) + 1:])["type"], 3)
        self.assertFalse(transport.connected)

    def test_others_served(self):
        """After refusing one client the factory still serves the others."""
        self.register()
        other, other_transport = self.connect(IPv4Address("TCP", "127.0.0.1", 6666))
        self.refused(b"garbage")
        self.send(other, data())
        complete_connection(self.reactor)[0].dataReceived(ack())
        self.assertEqual(other_transport.value(), ack() + b"\n")


class ClientGoneTests(ReverseTestCase):
    """
    A client that disconnects during a forward cancels it.
    """

    def setUp(self):
        super().setUp()
        self.register(100, 124)
        self.register(101, 125)
        self.protocol, self.transport = self.connect()
        self.send(self.protocol, data())

    def test_while_connecting(self):
        """The connection attempt is stopped, no other server is tried, nobody is marked down."""
        self.transport.loseConnection()
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual([s.retry_at for s in self.registry.servers("PP_1")], [None, None])
        self.assertEqual(self.lines(LogLevel.warn), [])
        self.assertNoErrorsLogged()

    def test_while_waiting(self):
        """The upstream connection is closed and nothing is logged as an error."""
        _, upstream = complete_connection(self.reactor)
        self.transport.loseConnection()
        self.assertFalse(upstream.connected)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertNoErrorsLogged()

    def test_removed_from_factory(self):
        """A closed connection leaves the factory's set of open connections."""
        self.transport.loseConnection()
        self.assertNotIn(self.protocol, self.factory.connections)


def _link(reactor, server_factory, pumps):
    """
    Complete the first pending connection attempt on C{reactor} to the
    listener on its port, over L{iosim}.

    :returns: whether there was one to complete.
    """
    pump = iosim.ConnectionCompleter(reactor).succeedOnce()
    if pump is None:
        return False
    pumps.append(pump)
    return True


def settle(reactor, pumps):
    """
    Move bytes over every in-memory connection and complete pending
    connection attempts until nothing more happens.
    """
    while True:
        moved = [pump.flush() for pump in pumps]
        if not any(moved) and not _link(reactor, None, pumps):
            return


class EndToEndTests(SynchronousTestCase):
    """
    The send client, the reverse proxy and two backend servers, connected in
    memory over L{iosim}.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.registry = ServerRegistry(self.reactor)
        forwarder = Forwarder(self.reactor, self.registry, CONNECT_TIMEOUT, ANSWER_TIMEOUT, 64 * 1024)
        self.reactor.listenTCP(123, ReverseFactory(self.reactor, self.registry, forwarder, IDLE_TIMEOUT, SETUP_GRACE))
        self.pumps = []
        self.backends = []
        for server_id, port in ((100, 124), (101, 125)):
            backend = BackendService(self.reactor, TCP4ServerEndpoint(self.reactor, port),
                                     TCP4ClientEndpoint(self.reactor, "127.0.0.1", 123), server_id, "PP_1", 123)
            backend.privilegedStartService()
            backend.startService()
            self.addCleanup(backend.stopService)
            self.backends.append(backend)
        settle(self.reactor, self.pumps)

    def test_registered(self):
        """Both backends registered themselves over their lifelines."""
        self.assertEqual([(s.server_id, s.port) for s in self.registry.servers("PP_1")], [(100, 124), (101, 125)])

    def test_exchange(self):
        """Three messages through the reverse proxy are answered alternately by both servers and check out."""
        out = io.StringIO()
        packets = [{"privPoliId": "PP_1", "payload": text} for text in ("one", "two", "thr\u00e9e")]
        d = Deferred.fromCoroutine(send_packets(self.reactor, ("127.0.0.1", 123), 50, packets, 5, out))
        settle(self.reactor, self.pumps)
        self.assertTrue(self.successResultOf(d))
        lines = out.getvalue().splitlines()
        self.assertEqual(lines[0], 'Sending message {"type": 0, "privPoliId": "PP_1", "payload": "one", '
                                   '"srcid": 50, "payloadsize": 3} to privacy policy PP_1 through reverse '
                                   'proxy running on port 123')
        self.assertEqual([line.split(" payload:")[0] for line in lines if line.startswith("Receiving")], [
            "Receiving a response from the server 100",
            "Receiving a response from the server 101",
            "Receiving a response from the server 100",
        ])
        self.assertEqual(lines.count("transmission OK"), 3)
        self.assertEqual(len(lines), 9)

    def test_lifeline_closing_unregisters(self):
        """A stopped backend's lifeline closes and the reverse proxy forgets it; the other still answers."""
        self.reactor.advance(SETUP_GRACE)
        self.backends[0].stopService()
        settle(self.reactor, self.pumps)
        self.assertEqual([s.server_id for s in self.registry.servers("PP_1")], [101])
        out = io.StringIO()
        packets = [{"privPoliId": "PP_1", "payload": "x"}] * 2
        d = Deferred.fromCoroutine(send_packets(self.reactor, ("127.0.0.1", 123), 50, packets, 5, out))
        settle(self.reactor, self.pumps)
        self.assertTrue(self.successResultOf(d))
        self.assertEqual(out.getvalue().count("Receiving a response from the server 101 "), 2)


class ShutdownTests(ReverseTestCase):
    """
    A graceful shutdown lets a forward in flight be answered, then closes.
    """

    def setUp(self):
        super().setUp()
        self.register(100, 124)
        self.protocol, self.transport = self.connect()

    def test_idle_client_closed_at_once(self):
        """A client with no message in flight is closed at once."""
        self.protocol.close_when_idle()
        self.assertFalse(self.transport.connected)

    def test_answer_in_flight_delivered(self):
        """A client waiting for an answer gets it, and is then closed."""
        self.send(self.protocol, data())
        self.protocol.close_when_idle()
        self.assertTrue(self.transport.connected)
        complete_connection(self.reactor)[0].dataReceived(ack())
        self.assertEqual(self.transport.value(), ack() + b"\n")
        self.assertFalse(self.transport.connected)


class HalfCloseTests(ReverseTestCase):
    """
    A client that half-closes after its messages still gets their answers.
    """

    def setUp(self):
        super().setUp()
        self.register(100, 124)
        self.protocol, self.transport = self.connect()

    def test_answers_then_closes(self):
        """Messages sent before the half-close are answered in order, then the connection closes."""
        self.send(self.protocol, data("one"))
        self.send(self.protocol, data("two"))
        self.protocol.readConnectionLost()
        self.assertTrue(self.transport.connected)
        complete_connection(self.reactor)[0].dataReceived(ack("one"))
        self.assertTrue(self.transport.connected)
        complete_connection(self.reactor)[0].dataReceived(ack("two"))
        self.assertEqual(self.transport.value(), ack("one") + b"\n" + ack("two") + b"\n")
        self.assertFalse(self.transport.connected)

    def test_nothing_sent(self):
        """A client that half-closes having sent nothing is closed at once."""
        self.protocol.readConnectionLost()
        self.assertFalse(self.transport.connected)


class EscapedLogTests(ReverseTestCase):
    """
    Ids, policies and payloads from the wire reach the log escaped.
    """

    def test_hostile_text_escaped(self):
        """ESC, newlines and non-ASCII in a server id, a policy and a payload are logged as \\xhh, one line each."""
        self.register("id\x1b[2J", 124, "PP\n\xff")
        protocol, transport = self.connect()
        self.send(protocol, data("x\x1b]0;owned\x07\n", privPoliId="PP\n\xff"))
        complete_connection(self.reactor)[0].dataReceived(ack("x\x1b]0;owned\x07\n"))
        lines = self.lines()
        self.assertIn("Receiving setup message from server id id\\x1b[2J privacy policy PP\\x0a\\xff port 124", lines)
        self.assertIn("Forwarding a data message to server id id\\x1b[2J payload: x\\x1b]0;owned\\x07\\x0a", lines)
        for line in lines:
            self.assertTrue(line.isascii() and line.isprintable(), line)


class LaterRegistry:
    """
    A registry that answers registrations and removals when the test says,
    as one shared over the network does; it keeps a L{ServerRegistry} for
    the rest.

    :ivar pending: the L{Deferred}s of the registrations and removals asked.
    :ivar lifelines: the servers it was told keep their setup connection open.
    """

    def __init__(self, reactor):
        self.table = ServerRegistry(reactor)
        self.pending = []
        self.lifelines = []

    def register(self, server_id, policy, host, port):
        answer = Deferred()
        self.pending.append(answer)
        return answer.addCallback(lambda _: self.table.register(server_id, policy, host, port))

    def remove(self, server):
        answer = Deferred()
        self.pending.append(answer)
        return answer.addCallback(lambda _: self.table.remove(server))

    def lifeline(self, server):
        self.lifelines.append(server)

    def answer(self):
        """
        Answer the oldest registration or removal asked.
        """
        self.pending.pop(0).callback(None)

    def __getattr__(self, name):
        return getattr(self.table, name)


class SharedRegistryTests(ReverseTestCase):
    """
    A registry that answers later (one shared through Redis).
    """

    def setUp(self):
        super().setUp()
        self.registry = LaterRegistry(self.reactor)
        self.factory.registry = self.forwarder.registry = self.registry

    def test_nothing_read_while_registering(self):
        """While a setup is being registered the connection is paused; once registered it is logged and reading resumes."""
        protocol, transport = self.connect(SERVER_HOST)
        protocol.dataReceived(setup() + b"\n" + setup(server_id=101, port=125))
        self.assertEqual(transport.producerState, "paused")
        self.assertEqual(len(self.registry.pending), 1)
        self.assertEqual(self.lines(LogLevel.info), [])
        self.registry.answer()
        self.assertEqual(self.lines(LogLevel.info),
                         ["Receiving setup message from server id 100 privacy policy PP_1 port 124"])
        self.assertEqual(len(self.registry.pending), 1)
        self.registry.answer()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual([server.server_id for server in self.registry.servers("PP_1")], [100, 101])

    def test_refused_later(self):
        """A registration refused when the registry answers gets the type 3 error and the connection is closed."""
        protocol, transport = self.connect(SERVER_HOST)
        protocol.dataReceived(setup())
        self.registry.pending.pop(0).errback(too_many_servers(1))
        self.assertEqual(replies(transport), [{
            "type": 3, "error": "setup refused: 1 servers are registered, the most allowed", "privPolyId": "PP_1"}])
        self.assertFalse(transport.connected)
        self.assertIn("refused setup from 10.0.0.7:40001: --max-servers 1 reached", self.lines(LogLevel.warn))

    def test_registry_broken(self):
        """A registration failing for another reason is logged as a failure and the connection aborted."""
        protocol, transport = self.connect(SERVER_HOST)
        protocol.dataReceived(setup())
        self.registry.pending.pop(0).errback(RuntimeError("bug"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(transport.disconnecting or not transport.connected)

    def test_closed_while_registering(self):
        """A server that closes before its registration is answered stays registered, and no timer is left."""
        _, transport = self.register(close=True)
        self.registry.answer()
        self.assertEqual([server.server_id for server in self.registry.servers("PP_1")], [100])
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.registry.pending, [])

    def test_lifeline_told_and_removed(self):
        """A setup connection kept open past the grace is told to the registry as a lifeline, and removed when it closes."""
        _, transport = self.register(close=False)
        self.registry.answer()
        self.reactor.advance(SETUP_GRACE)
        self.assertEqual([server.server_id for server in self.registry.lifelines], [100])
        transport.loseConnection()
        self.registry.answer()
        self.assertEqual(self.registry.servers("PP_1"), [])
        self.assertIn("removed server id 100 of privacy policy PP_1: its registration connection closed",
                      self.lines(LogLevel.info))

    def test_setup_on_a_lifeline(self):
        """A further setup on a connection already a lifeline is told to the registry as one at once."""
        protocol, transport = self.register(close=False)
        self.registry.answer()
        self.reactor.advance(SETUP_GRACE)
        protocol.dataReceived(b"\n" + setup(server_id=101, port=125))
        self.registry.answer()
        self.assertEqual([server.server_id for server in self.registry.lifelines], [100, 101])

    def test_lifeline_closed_while_registering(self):
        """A setup on a lifeline whose connection closes before the registry answers is removed like the lifeline's
        other servers, not held as a lifeline with no connection (renewed for ever)."""
        protocol, transport = self.register(close=False)
        self.registry.answer()
        self.reactor.advance(SETUP_GRACE)
        protocol.dataReceived(b"\n" + setup(server_id=101, port=125))
        transport.loseConnection()
        self.registry.answer()  # the setup of 101
        while self.registry.pending:
            self.registry.answer()  # the removals
        self.assertEqual(self.registry.servers("PP_1"), [])
        self.assertEqual(self.registry.lifelines[1:], [])

    def test_removal_failure_logged(self):
        """A removal that fails is logged as a failure, not left unhandled."""
        _, transport = self.register(close=False)
        self.registry.answer()
        self.reactor.advance(SETUP_GRACE)
        transport.loseConnection()
        self.registry.pending.pop(0).errback(RuntimeError("gone"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
