"""
End-to-end tests of the relay role: a real C{twistd netproxy relay} in front
of real ack servers and in-process servers, driven by naive blocking-socket
clients (one JSON object, no newline, then one read) and by Twisted clients.
"""

import json
import os
import signal

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import CannotListenError
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from tests.integration.daemon import (
    LISTEN,
    RawReply,
    bounded,
    closed_port,
    connect_client,
    fresh_directory,
    raw_exchange,
    refused_after_close,
    relay_request,
    run_twistd,
    start_daemon,
    start_daemons,
    start_server,
)

NOT_ALLOWED = b"Error, not allowed address"
BAD_REQUEST = b"Error, bad request: "


class _RelayTestCase(TestCase):
    """
    Helpers for tests with a relay and an ack server.
    """

    timeout = 60

    async def relay_and_ack(self, *relay_args):
        """
        Start an ack server and a relay with C{relay_args}, at once.

        :returns: C{(relay, ack)}.
        """
        return await start_daemons(self, ("relay", "--listen", LISTEN, *relay_args), ("ack", "--listen", LISTEN))

    async def assert_served(self, relay, ack, message="good"):
        """
        A well-behaved client is still served: its request reaches the ack
        server and DONE comes back.
        """
        since = ack.mark()
        reply = await raw_exchange(relay.port, relay_request(ack.port, message))
        self.assertEqual(reply.data, b"DONE", f"the relay no longer serves good clients: {reply}")
        await ack.wait_for(rf"received '{message}' from 127\.0\.0\.1:\d+$", since)

    async def assert_refused(self, relay, request, expected=None, prefix=BAD_REQUEST, **options):
        """
        Send C{request} on a new connection: the relay answers with an error
        text (exactly C{expected}, or starting with C{prefix}), no newline,
        and closes the connection.

        :returns: the reply text.
        """
        reply = await raw_exchange(relay.port, request, until_closed=True, **options)
        if expected is not None:
            self.assertEqual(reply.data, expected, reply)
        else:
            self.assertTrue(reply.data.startswith(prefix), f"{request[:80]!r} got {reply}")
        self.assertNotIn(b"\n", reply.data)
        self.assertTrue(reply.closed, f"the relay left the connection open after {reply.data!r}")
        return reply.data


class ForwardingTests(_RelayTestCase):
    """
    Requests are forwarded, as text only, and replies come back as they arrive.
    """

    async def test_done(self):
        """
        A naive client's single JSON object gets exactly the ack server's DONE, and only the text is forwarded.
        """
        relay, ack = await self.relay_and_ack("--block", "127.0.0.1:7777")
        reply = await raw_exchange(relay.port, relay_request(ack.port, "tgmr"))
        self.assertEqual(reply.data, b"DONE")
        self.assertFalse(reply.closed)
        await ack.wait_for(r"received 'tgmr' from 127\.0\.0\.1:\d+$")
        self.assertIsNone(ack.output.find(r"server_ip|server_port"), ack.output.transcript())
        await relay.wait_for(rf"127\.0\.0\.1:\d+.*127\.0\.0\.1:{ack.port}")

    async def test_reply_before_server_closes(self):
        """
        A reply is relayed as soon as it arrives, while the destination keeps its connection open.
        """
        relay = await start_daemon(self, "relay", "--listen", LISTEN)
        # Started after the relay, so stopped before it at cleanup.
        server = start_server(self, reply=lambda data: b"DONE")
        reply = await raw_exchange(relay.port, relay_request(server.port, "tgmr"))
        self.assertEqual(reply.data, b"DONE")
        self.assertEqual([connection.received for connection in server.connections], [b"tgmr"])

    async def test_client_disconnect_closes_upstream(self):
        """
        When the client disconnects after its reply, the relay closes the exchange's upstream connection.
        """
        relay = await start_daemon(self, "relay", "--listen", LISTEN)
        server = start_server(self, reply=lambda data: b"DONE")
        upstream = server.next_connection()
        reply = await raw_exchange(relay.port, relay_request(server.port))
        self.assertEqual(reply.data, b"DONE")
        upstream = await upstream
        # The relay's --idle-timeout is 30 s: closing sooner means the
        # relay acted on the disconnect.
        await bounded(upstream.lost, 15).addErrback(
            lambda failure: self.fail(f"upstream still open 15 s after the client left\n{relay.output.transcript()}"))
        await relay.wait_for(r"connection from 127\.0\.0\.1:\d+ closed")

    async def test_half_closing_client(self):
        """
        A client that half-closes after its request still gets the whole reply, then the relay closes.
        """
        relay = await start_daemon(self, "relay", "--listen", LISTEN)
        server = start_server(self, reply=lambda data: b"DONE", close_after_reply=True)
        reply = await raw_exchange(relay.port, relay_request(server.port), shutdown=True, until_closed=True)
        self.assertEqual(reply, RawReply(b"DONE", True))

    async def test_reply_streamed(self):
        """
        Reply bytes are relayed unchanged, chunk by chunk, without waiting for more of them.
        """
        server = start_server(self)
        relay = await start_daemon(self, "relay", "--listen", LISTEN)
        upstream = server.next_connection()
        client = await connect_client(self, relay.port, relay_request(server.port, "hi"))
        upstream = await upstream
        first, second = b"first \x00\xff part\n", b"second"
        upstream.transport.write(first)
        self.assertEqual(await client.wait_for_bytes(len(first)), first)
        upstream.transport.write(second)
        self.assertEqual(await client.wait_for_bytes(len(first + second)), first + second)
        self.assertEqual(upstream.received, b"hi")

    async def test_utf8_text(self):
        """
        The message text goes out as its UTF-8 bytes.
        """
        relay = await start_daemon(self, "relay", "--listen", LISTEN)
        server = start_server(self, reply=lambda data: b"ok")
        reply = await raw_exchange(relay.port, relay_request(server.port, "h\u00e9llo \u2603"))
        self.assertEqual(reply.data, b"ok")
        self.assertEqual(server.connections[0].received, "h\u00e9llo \u2603".encode("utf-8"))

    async def test_several_requests_on_one_connection(self):
        """
        Requests sent one after another on one connection are each answered, each over its own upstream connection.
        """
        server = start_server(self, reply=lambda data: b"SECOND:" + data)
        relay, ack = await self.relay_and_ack()
        reply = await raw_exchange(
            relay.port,
            relay_request(ack.port, "one"),
            relay_request(server.port, "two"),
            relay_request(ack.port, "three"),
        )
        self.assertEqual(reply.data, b"DONESECOND:twoDONE")
        self.assertFalse(reply.closed)
        one = await ack.wait_for(r"received 'one' from 127\.0\.0\.1:(\d+)$")
        three = await ack.wait_for(r"received 'three' from 127\.0\.0\.1:(\d+)$")
        self.assertNotEqual(one.group(1), three.group(1))
        self.assertEqual([connection.received for connection in server.connections], [b"two"])
        # The next request closed the exchange with the server.
        await server.connections[0].lost

    async def test_newline_separated_requests(self):
        """
        Requests written in one go, one per line as netproxy's clients send them, are all read.
        """
        relay, ack = await self.relay_and_ack()
        client = await connect_client(self, relay.port, relay_request(ack.port, "one") + b"\n")
        await client.wait_for_bytes(4)
        client.transport.write(relay_request(ack.port, "two") + b"\n \r\n\t" + relay_request(ack.port, "three"))
        await ack.wait_for(r"received 'three' from")
        self.assertEqual(await client.wait_for_bytes(8), b"DONEDONE")

    async def test_many_clients_at_once(self):
        """
        200 clients connected at the same time are all served.
        """
        relay, ack = await self.relay_and_ack()
        clients = await gatherResults(
            [Deferred.fromCoroutine(connect_client(self, relay.port, relay_request(ack.port, f"c{n}")))
             for n in range(200)],
            consumeErrors=True,
        )
        replies = await gatherResults([client.wait_for_bytes(4) for client in clients], consumeErrors=True)
        self.assertEqual(replies, [b"DONE"] * 200)


class BlockingTests(_RelayTestCase):
    """
    Blocked destinations get the exact refusal and never see a connection.
    """

    async def test_blocked_address_and_port(self):
        """
        A request to a blocked IP:port gets exactly 'Error, not allowed address' and the destination is never contacted.
        """
        try:
            witness = start_server(self, port=7777)
        except CannotListenError:
            witness = None
        relay, ack = await self.relay_and_ack("--block", "127.0.0.1:7777")
        await self.assert_refused(relay, relay_request(7777), NOT_ALLOWED)
        await relay.wait_for(r"blocked request from 127\.0\.0\.1:\d+ to 127\.0\.0\.1:7777")
        if witness is not None:
            await witness.probe()
            self.assertEqual(len(witness.connections), 1, "the relay connected to a blocked destination")
        await self.assert_served(relay, ack)

    async def test_blocked_port_never_connected(self):
        """
        A '*:PORT' rule blocks that port on every host, and the blocked server sees no connection.
        """
        witness = start_server(self, reply=lambda data: b"DONE")
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--block", f"*:{witness.port}")
        for host in ("127.0.0.1", "127.0.0.2"):
            await self.assert_refused(relay, relay_request(witness.port, host=host), NOT_ALLOWED)
        await witness.probe()
        self.assertEqual(len(witness.connections), 1, "the relay connected to a blocked destination")

    async def test_blocked_address_spellings(self):
        """
        Names and odd spellings that resolve to a blocked address are refused and never connected.
        """
        witness = start_server(self, reply=lambda data: b"DONE")
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--block", f"127.0.0.1:{witness.port}")
        await self.assert_refused(relay, relay_request(witness.port, host="localhost"), NOT_ALLOWED)
        for host in ("LOCALHOST.", "127.1", "2130706433", "0x7f.0.0.1", "127.000.000.001",
                     "::ffff:127.0.0.1", "[::ffff:7f00:1]"):
            await self.assert_refused(relay, relay_request(witness.port, host=host), prefix=b"Error, ")
        await witness.probe()
        self.assertEqual(len(witness.connections), 1, "the relay connected to a blocked destination")

    async def test_this_host_matched_as_loopback(self):
        """
        0.0.0.0, ::, and their other spellings are this host: a 127.0.0.0/8 rule refuses them, never connected.
        """
        witness = start_server(self, reply=lambda data: b"DONE")
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--block", "127.0.0.0/8")
        for host in ("0.0.0.0", "0", "0x0", "::ffff:0.0.0.0", "[::]", "[0:0:0:0:0:0:0:1]", "0.0.0.0."):
            await self.assert_refused(relay, relay_request(witness.port, host=host), NOT_ALLOWED)
        await relay.wait_for(r"blocked request from .* is 0\.0\.0\.0 \(this host\), blocked by rule 127\.0\.0\.0/8")
        await witness.probe()
        self.assertEqual(len(witness.connections), 1, "the relay connected to a blocked destination")

    async def test_blocked_name(self):
        """
        A host-name rule matches the name in any case and with a trailing dot.
        """
        relay, ack = await self.relay_and_ack("--block", "localhost")
        for host in ("localhost", "LocalHost", "localhost."):
            await self.assert_refused(relay, relay_request(ack.port, host=host), NOT_ALLOWED)
        self.assertIsNone(ack.output.find("received"))
        await self.assert_served(relay, ack)

    async def test_blocked_network(self):
        """
        A CIDR rule blocks every address in it, whatever the port.
        """
        relay, ack = await self.relay_and_ack("--block", "127.0.0.0/8")
        await self.assert_refused(relay, relay_request(ack.port), NOT_ALLOWED)
        self.assertIsNone(ack.output.find("received"))

    async def test_unreachable(self):
        """
        A destination that refuses the connection gets 'Error, could not connect to IP:PORT: connection refused'.
        """
        relay, ack = await self.relay_and_ack()
        port = closed_port()
        await self.assert_refused(
            relay, relay_request(port), f"Error, could not connect to 127.0.0.1:{port}: connection refused".encode())
        await self.assert_served(relay, ack)


class BadInputTests(_RelayTestCase):
    """
    Bad input gets a clear error and never stops the relay serving others.
    """

    async def test_garbage(self):
        """
        Bytes that are not JSON get 'Error, bad request: ...' and the connection is closed.
        """
        relay, ack = await self.relay_and_ack()
        for garbage in (b"\x00\xff\xfe garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b'{"a": }',
                        b'{"message": "\xff\xfe"}'):
            await self.assert_refused(relay, garbage)
            await self.assert_served(relay, ack)

    async def test_truncated_then_closed(self):
        """
        A client that sends half an object and closes is dropped without harm to others.
        """
        relay, ack = await self.relay_and_ack()
        request = relay_request(ack.port)
        reply = await raw_exchange(relay.port, request[: len(request) // 2], shutdown=True, until_closed=True)
        self.assertTrue(reply.closed, reply)
        self.assertTrue(reply.data == b"" or reply.data.startswith(BAD_REQUEST), reply)
        await self.assert_served(relay, ack)
        self.assertIsNone(ack.output.find("received '(?!good)"), ack.output.transcript())

    async def test_too_large(self):
        """
        A 1 MiB object gets 'Error, bad request: message larger than 65536 bytes' and is not forwarded.
        """
        relay, ack = await self.relay_and_ack()
        huge = relay_request(ack.port, "a" * (1 << 20))
        await self.assert_refused(relay, huge, BAD_REQUEST + b"message larger than 65536 bytes")
        await self.assert_served(relay, ack)
        self.assertIsNone(ack.output.find("received 'a"), ack.output.transcript())

    async def test_max_size_option(self):
        """
        --max-size sets the limit named in the error.
        """
        relay, ack = await self.relay_and_ack("--max-size", "100")
        await self.assert_refused(relay, relay_request(ack.port, "a" * 100), BAD_REQUEST + b"message larger than 100 bytes")
        await self.assert_served(relay, ack)

    async def test_not_an_object(self):
        """
        JSON values that are not objects get 'Error, bad request: ...'.
        """
        relay, ack = await self.relay_and_ack()
        for value in (b"[1, 2, 3]", b'"tgmr"', b"42", b"null", b"true"):
            await self.assert_refused(relay, value)
        await self.assert_served(relay, ack)

    async def test_wrong_fields(self):
        """
        Missing fields and fields of the wrong type get 'Error, bad request: ...' naming the field.
        """
        relay, ack = await self.relay_and_ack()
        good = {"server_ip": "127.0.0.1", "server_port": ack.port, "message": "tgmr"}
        cases = [
            ("server_ip", {"server_ip": 127}),
            ("server_ip", {"server_ip": ["127.0.0.1"]}),
            ("server_ip", {"server_ip": "not an address!"}),
            ("server_port", {"server_port": [ack.port]}),
            ("server_port", {"server_port": "http"}),
            ("server_port", {"server_port": True}),
            ("server_port", {"server_port": 1.5}),
            ("message", {"message": 5}),
            ("message", {"message": None}),
            ("message", {"message": {"text": "tgmr"}}),
        ]
        for field, change in cases:
            reply = await self.assert_refused(relay, json.dumps({**good, **change}).encode())
            self.assertIn(field.encode(), reply, change)
        for field in good:
            missing = {name: value for name, value in good.items() if name != field}
            reply = await self.assert_refused(relay, json.dumps(missing).encode())
            self.assertIn(field.encode(), reply)
        await self.assert_served(relay, ack)
        self.assertIsNone(ack.output.find("received '(?!good)"), ack.output.transcript())

    async def test_port_out_of_range(self):
        """
        Ports outside 1-65535 get 'Error, bad request: ...'.
        """
        relay, ack = await self.relay_and_ack()
        for port in (0, 70000, -1, "0", "70000"):
            reply = await self.assert_refused(relay, relay_request(port))
            self.assertIn(b"server_port", reply)
        await self.assert_served(relay, ack)

    async def test_bad_request_after_good_one(self):
        """
        A bad request on a connection that was served gets the error and the connection is closed.
        """
        relay, ack = await self.relay_and_ack()
        client = await connect_client(self, relay.port, relay_request(ack.port))
        await client.wait_for_bytes(4)
        client.transport.write(b"[]")
        await client.lost
        self.assertTrue(client.received.startswith(b"DONE" + BAD_REQUEST), client.received)
        self.assertNotIn(b"\n", client.received)
        await self.assert_served(relay, ack)

    async def test_idle_client(self):
        """
        With --idle-timeout 1 a client that says nothing, or stops mid-message, is disconnected.
        """
        relay, ack = await self.relay_and_ack("--idle-timeout", "1")
        silent, partial = await gatherResults([
            raw_exchange(relay.port, b"", until_closed=True),
            raw_exchange(relay.port, b'{"server_ip": "127.0.0.1"', until_closed=True),
        ])
        self.assertEqual(silent, RawReply(b"", True))
        self.assertTrue(partial.closed, partial)
        self.assertIsNone(partial.recv_error, partial)
        self.assertTrue(partial.data == b"" or partial.data.startswith(b"Error, "), partial)
        await self.assert_served(relay, ack)

    async def test_idle_exchange(self):
        """
        With --idle-timeout 1 an exchange whose server never answers is closed, upstream and client side.
        """
        server = start_server(self)
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--idle-timeout", "1")
        upstream = server.next_connection()
        client = await connect_client(self, relay.port, relay_request(server.port))
        upstream = await upstream
        await upstream.lost
        await client.lost
        self.assertEqual(upstream.received, b"tgmr")


class ReloadTests(_RelayTestCase):
    """
    SIGHUP re-reads --blocklist; a bad file keeps the rules in force.
    """

    async def test_sighup(self):
        """
        SIGHUP puts a rewritten blocklist in force, and a bad one is refused, the old rules staying.
        """
        blocklist = FilePath(fresh_directory(self)).child("blocklist")
        blocklist.setContent(b"# nothing blocked yet\n")
        relay, ack = await self.relay_and_ack("--blocklist", blocklist.path)
        await self.assert_served(relay, ack, "before")

        blocklist.setContent(f"# the ack server\n127.0.0.1:{ack.port}\n".encode())
        since = relay.mark()
        relay.send_signal(signal.SIGHUP)
        await relay.wait_for(r"reloaded", since)
        await self.assert_refused(relay, relay_request(ack.port, "after"), NOT_ALLOWED)

        blocklist.setContent(b"this is not a rule !\n")
        since = relay.mark()
        relay.send_signal(signal.SIGHUP)
        await relay.wait_for(r"refused to reload", since)
        await self.assert_refused(relay, relay_request(ack.port, "still"), NOT_ALLOWED)
        self.assertIsNone(ack.output.find("received '(after|still)'"), ack.output.transcript())

        blocklist.remove()
        since = relay.mark()
        relay.send_signal(signal.SIGHUP)
        await relay.wait_for(r"refused to reload", since)
        await self.assert_refused(relay, relay_request(ack.port, "gone"), NOT_ALLOWED)


class LifecycleTests(_RelayTestCase):
    """
    Start-up option errors and SIGTERM.
    """

    async def test_sigterm_exits_zero(self):
        """
        SIGTERM stops the relay with exit status 0, closing a connected client.
        """
        relay, ack = await self.relay_and_ack()
        await self.assert_served(relay, ack)
        client = await connect_client(self, relay.port)
        relay.send_signal(signal.SIGTERM)
        status = await relay.wait_exit()
        await client.lost
        self.assertEqual(status, "exit code 0", relay.output.transcript())

    async def test_sigterm_lets_exchange_finish(self):
        """
        On SIGTERM the relay stops accepting but an exchange in flight still gets its reply, then it exits 0.
        """
        server = start_server(self)
        relay = await start_daemon(self, "relay", "--listen", LISTEN)
        upstream = server.next_connection()
        client = await connect_client(self, relay.port, relay_request(server.port))
        upstream = await upstream
        relay.send_signal(signal.SIGTERM)
        await relay.wait_for(rf"Port {relay.port} Closed")
        refused = await refused_after_close(relay.port)
        self.assertIsInstance(refused, ConnectionRefusedError)
        upstream.transport.write(b"DONE")
        upstream.transport.loseConnection()
        self.assertEqual(await client.wait_for_bytes(4), b"DONE")
        status = await relay.wait_exit()
        self.assertEqual(status, "exit code 0", relay.output.transcript())

    async def test_bad_option_values(self):
        """
        A bad option value stops start-up with a non-zero status and a message naming the option and the value.
        """
        directory = fresh_directory(self)
        cases = [
            (["--idle-timeout", "soon"], "--idle-timeout", "soon"),
            (["--block", "*:99999"], "--block", "99999"),
            (["--blocklist", os.path.join(directory, "missing")], "--blocklist", "missing"),
            (["--max-size", "lots"], "--max-size", "lots"),
            (["--listen", "nonsense:1"], "--listen", "nonsense"),
        ]
        results = await gatherResults([
            Deferred.fromCoroutine(run_twistd("-n", "--pidfile=", "netproxy", "relay", *args, directory=directory))
            for args, _, _ in cases
        ], consumeErrors=True)
        for (args, option, value), result in zip(cases, results):
            self.assertNotEqual(result.code, 0, result)
            message = [line for line in (result.out + result.err).splitlines() if option in line and value in line]
            self.assertTrue(message, f"{args}: no line names {option} and {value!r}\n{result}")
            self.assertNotIn("Traceback", result.out + result.err)
