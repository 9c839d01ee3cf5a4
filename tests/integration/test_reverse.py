"""
End-to-end tests of the message reverse proxy: a real C{twistd netproxy
reverse} with real C{twistd netproxy server} daemons registered with it,
third-party style servers and clients written with blocking sockets, and the
C{netproxy-client send} command.
"""

import json
import os
import signal
from collections import Counter

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from tests.integration.daemon import LOCALHOST, closed_port, fresh_directory, raw_exchange, run_client
from tests.integration.reverse_peers import (
    FakeServer,
    setup_from,
    setup_message,
    ask,
    ask_concurrently,
    data_message,
    encode,
    kill,
    naive_ack,
    registered_line,
    sha1_hex,
    start_backend,
    start_backends,
    start_killable_backend,
    start_reverse,
)


class _ReverseTestCase(TestCase):
    """
    Checks shared by the reverse proxy tests.
    """

    timeout = 60

    def assert_ack(self, answer, message, server_ids):
        """
        C{answer} is the ack of C{message} from one of C{server_ids}.

        :returns: the id of the server that answered.
        """
        self.assertEqual(answer.get("type"), 2, answer)
        self.assertEqual(answer.get("destid"), message["srcid"], answer)
        self.assertEqual(answer.get("payload"), sha1_hex(message["payload"]), answer)
        self.assertIn(answer.get("srcid"), server_ids, answer)
        return answer["srcid"]

    async def assert_served(self, reverse, policy="PP_1", server_ids=(100,)):
        """
        A good client is still served: its message is acked by one of C{server_ids}.
        """
        message = data_message(policy, "still served")
        (answer,) = await ask(reverse.port, message)
        self.assert_ack(answer, message, server_ids)

    async def assert_refused(self, reverse, request, error=None, **options):
        """
        Send C{request} on a new connection: the reverse proxy answers with
        one type 3 error line (its text C{error}, or any "bad message") and
        closes the connection.

        :returns: the decoded error.
        """
        reply = await raw_exchange(reverse.port, request, until_closed=True, **options)
        self.assertTrue(reply.closed, f"the reverse proxy left the connection open after {reply}")
        self.assertTrue(reply.data.endswith(b"\n"), reply)
        self.assertEqual(reply.data.count(b"\n"), 1, reply)
        answer = json.loads(reply.data)
        self.assertEqual(answer.get("type"), 3, answer)
        if error is None:
            self.assertTrue(answer.get("error", "").startswith("bad message: "), answer)
        else:
            self.assertEqual(answer.get("error"), error, answer)
        return answer


class RotationTests(_ReverseTestCase):
    """
    Round-robin over real servers: 100 and 200 serve PP_1 (registered in that
    order), 300 serves PP_2.
    """

    async def setUp(self):
        self.reverse = await start_reverse(self, "--retry", "0.2")
        self.server_100, self.server_300 = await start_backends(self, self.reverse, (100, "PP_1"), (300, "PP_2"))
        self.server_200 = await start_backend(self, self.reverse, 200, "PP_1")

    async def test_round_robin_in_order(self):
        """
        Five PP_1 messages go to 100, 200, 100, 200, 100, and a PP_2 message to 300 only.
        """
        answered = []
        for n in range(5):
            message = data_message("PP_1", f"message {n}")
            (answer,) = await ask(self.reverse.port, message)
            answered.append(self.assert_ack(answer, message, (100, 200)))
        self.assertEqual(answered, [100, 200, 100, 200, 100])
        message = data_message("PP_2", "other policy")
        (answer,) = await ask(self.reverse.port, message)
        self.assert_ack(answer, message, (300,))
        await self.server_300.wait_for(r"Received a message from client 50 payload: other policy$")
        self.assertIsNone(self.server_300.output.find(r"payload: message \d"), self.server_300.output.transcript())

    async def test_concurrent_split(self):
        """
        Six PP_1 messages sent at the same moment from six connections are split 3/3 between 100 and 200.
        """
        messages = [data_message("PP_1", f"concurrent {n}", srcid=60 + n) for n in range(6)]
        answers = await ask_concurrently(self.reverse.port, messages)
        answered = Counter(self.assert_ack(answer, message, (100, 200)) for answer, message in zip(answers, messages))
        self.assertEqual(answered, {100: 3, 200: 3})

    async def test_reverse_restarted(self):
        """
        A reverse proxy restarted on the same port gets both PP_1 servers back by themselves and uses both.
        """
        port = self.reverse.port
        self.assertTrue(await self.reverse.stop())
        self.assertEqual(self.reverse.output.status_text(), "exit code 0", self.reverse.output.transcript())
        reverse = await start_reverse(self, listen=f"tcp:{port}:interface=127.0.0.1")
        self.assertEqual(reverse.port, port)
        for server_id, server in ((100, self.server_100), (200, self.server_200)):
            await reverse.wait_for(registered_line(server_id, "PP_1", server.port), timeout=15)
        answered = []
        for n in range(4):
            message = data_message("PP_1", f"after restart {n}")
            (answer,) = await ask(port, message)
            answered.append(self.assert_ack(answer, message, (100, 200)))
        self.assertEqual(Counter(answered), {100: 2, 200: 2})


class KilledServerTests(_ReverseTestCase):
    """
    A server that dies without a word: 100 and 200 serve PP_1.
    """

    async def setUp(self):
        self.reverse = await start_reverse(self, "--retry", "0.2")
        self.server_100, self.server_200 = await gatherResults([
            Deferred.fromCoroutine(start_backend(self, self.reverse, 100, "PP_1")),
            Deferred.fromCoroutine(start_killable_backend(self, self.reverse, 200, "PP_1")),
        ], consumeErrors=True).addErrback(lambda failure: failure.value.subFailure)

    async def test_killed_server(self):
        """
        After SIGKILL of server 200 every PP_1 message is answered by 100, and the reverse drops or marks down 200.
        """
        kill(self.server_200)
        for n in range(6):
            message = data_message("PP_1", f"after kill {n}")
            (answer,) = await ask(self.reverse.port, message)
            self.assert_ack(answer, message, (100,))
        await self.reverse.wait_for(r"removed server id 200 of privacy policy PP_1: its registration connection closed"
                                    r"|server id 200 at 127\.0\.0\.1:\d+ failed: .*; marked down")


class ThirdPartyPeerTests(_ReverseTestCase):
    """
    Servers and clients written as third-party code is: string-typed fields,
    a setup connection closed at once, one message per connection, no
    newlines, one read.
    """

    async def setUp(self):
        self.reverse = await start_reverse(self, "--retry", "0.2")

    async def test_string_fields_listen_after_setup(self):
        """
        A server that registers with string fields and listens only after closing its setup gets the client's exact message and its answer goes back byte for byte.
        """
        fake = FakeServer(self)
        await fake.setup(400, "PP_3", self.reverse.port)
        await self.reverse.wait_for(registered_line(400, "PP_3", fake.port))
        answer = naive_ack(400)
        serving = fake.serve(1, answer, wait_for_close=True)
        message = {"type": "0", "srcid": "60", "privPolyId": "PP_3", "payloadsize": "5", "payload": "hello"}
        reply = await raw_exchange(self.reverse.port, encode(message))
        self.assertEqual(reply.data, answer(message) + b"\n", reply)
        received = await serving
        self.assertEqual([json.loads(raw) for raw in received], [message])
        self.assertEqual(fake.closed_by_peer, [True], "the reverse proxy kept the server connection open")
        self.assertIsNone(self.reverse.output.find(r"server id 400 .*marked down"), self.reverse.output.transcript())

    async def test_one_message_per_connection(self):
        """
        Two messages on one client connection reach a server that answers one message per connection and closes.
        """
        fake = FakeServer(self)
        await fake.setup(400, "PP_3", self.reverse.port)
        await self.reverse.wait_for(registered_line(400, "PP_3", fake.port))
        serving = fake.serve(2, naive_ack(400))
        first = {"type": "0", "srcid": "60", "privPolyId": "PP_3", "payloadsize": "5", "payload": "first"}
        second = {**first, "payloadsize": "6", "payload": "second"}
        answers = await ask(self.reverse.port, first, second)
        for message, answer in zip((first, second), answers):
            self.assertEqual(answer, {"type": "2", "srcid": "400", "destid": "60", "payloadsize": "40",
                                      "payload": sha1_hex(message["payload"])})
        received = await serving
        self.assertEqual([json.loads(raw) for raw in received], [first, second])

    async def test_failover_to_live_server(self):
        """
        With a registered server whose port refuses connections, every message is answered by the live server.
        """
        dead = FakeServer(self)
        await dead.setup(400, "PP_1", self.reverse.port)
        await self.reverse.wait_for(registered_line(400, "PP_1", dead.port))
        await start_backend(self, self.reverse, 100, "PP_1")
        messages = [data_message("PP_1", f"failover {n}") for n in range(6)]
        answers = await ask(self.reverse.port, *messages)
        for message, answer in zip(messages, answers):
            self.assert_ack(answer, message, (100,))
        await self.reverse.wait_for(rf"server id 400 at 127\.0\.0\.1:{dead.port} failed: connection refused; marked down$")

    async def test_down_server_rejoins(self):
        """
        A server marked down takes its turn again once its --retry back-off is over, and answers.
        """
        late = FakeServer(self)
        await late.setup(400, "PP_1", self.reverse.port)
        await self.reverse.wait_for(registered_line(400, "PP_1", late.port))
        await start_backend(self, self.reverse, 100, "PP_1")
        message = data_message("PP_1", "while down")
        (answer,) = await ask(self.reverse.port, message)
        self.assert_ack(answer, message, (100,))
        await self.reverse.wait_for(r"server id 400 .* marked down$")
        serving = late.serve(1, naive_ack(400))
        # Each round is a real exchange; the 0.2 s back-off ends after a few
        # dozen of them, and the bound is far above that.
        for n in range(2000):
            message = data_message("PP_1", f"round {n}")
            (answer,) = await ask(self.reverse.port, message)
            if answer["srcid"] != 100:
                break
        self.assertEqual(answer, {"type": "2", "srcid": "400", "destid": "50", "payloadsize": "40",
                                  "payload": sha1_hex(message["payload"])})
        self.assertEqual([json.loads(raw) for raw in await serving], [message])


class RegistrationTrustTests(_ReverseTestCase):
    """
    Who may register, and whose an id is: server 100 (a real server keeping
    its lifeline open) registered from 127.0.0.1; 127.0.0.1 and 127.0.0.2
    may register servers, 127.0.0.3 may not.
    """

    async def setUp(self):
        self.reverse = await start_reverse(self, "--timeout", "1", "--allow-servers", "127.0.0.1/32",
                                           "--allow-servers", "127.0.0.2")
        self.server_100 = await start_backend(self, self.reverse, 100, "PP_1")

    def assert_setup_refused(self, reply, error):
        """
        C{reply} to a setup is one type 3 error line saying C{error}.
        """
        self.assertTrue(reply.endswith(b"\n") and reply.count(b"\n") == 1, reply)
        self.assertEqual(json.loads(reply), {"type": "3", "error": error, "privPolyId": "PP_1"})

    async def test_takeover_refused(self):
        """
        A setup for id 100 from another host is refused with a type 3 error and a warning, and 100 keeps every message.
        """
        impostor = FakeServer(self, host="127.0.0.2")
        impostor.black_hole()
        reply = await impostor.setup(100, "PP_1", self.reverse.port)
        self.assert_setup_refused(reply, "setup refused: server id 100 is registered from another host")
        for n in range(4):
            message = data_message("PP_1", f"after the takeover attempt {n}")
            (answer,) = await ask(self.reverse.port, message)
            self.assert_ack(answer, message, (100,))
        self.assertEqual(impostor.connections_made(), 0)
        line = (rf"#warn\] refused setup from 127\.0\.0\.2:\d+: server id 100 is held by "
                rf"127\.0\.0\.1:{self.server_100.port}, registered from another host$")
        await self.reverse.wait_for(line)

    async def test_host_not_allowed(self):
        """
        A setup from a host outside --allow-servers gets a type 3 error, and its server never gets a message.
        """
        outsider = FakeServer(self, host="127.0.0.3")
        outsider.black_hole()
        reply = await outsider.setup(300, "PP_1", self.reverse.port)
        self.assert_setup_refused(reply, "setup refused: 127.0.0.3 may not register servers")
        await self.reverse.wait_for(r"#warn\] refused setup from 127\.0\.0\.3:\d+: "
                                    r"127\.0\.0\.3 is not in --allow-servers$")
        for n in range(2):
            await self.assert_served(self.reverse)
        self.assertEqual(outsider.connections_made(), 0)


class BoundedFailoverTests(_ReverseTestCase):
    """
    Registrations and failover have limits: four black-hole servers of PP_1
    that accept and never answer, --timeout 1, --max-tries 3 (the default).
    """

    async def setUp(self):
        self.reverse = await start_reverse(self, "--timeout", "1", "--retry", "60")
        self.holes = [FakeServer(self) for _ in range(4)]
        for server_id, hole in enumerate(self.holes, 1):
            hole.black_hole()
            await hole.setup(server_id, "PP_1", self.reverse.port)
            await self.reverse.wait_for(registered_line(server_id, "PP_1", hole.port))

    async def test_three_tries(self):
        """
        A message is tried on three of the four black holes, then the client gets a type 3 error.
        """
        (answer,) = await ask(self.reverse.port, data_message("PP_1", "into the void"))
        self.assertEqual(answer, {"type": 3, "error": "3 servers of privacy policy PP_1 tried, none answered",
                                  "privPoliId": "PP_1"})
        self.assertEqual(sum(hole.connections_made() for hole in self.holes), 3)
        await self.reverse.wait_for(r"#error\] no answer from 3 of the 4 servers of privacy policy PP_1 "
                                    r"tried: giving up \(--max-tries 3\)$")

    async def test_flood_of_setups(self):
        """
        Past 64 servers from one host, a setup is refused and its connection closed; a message then makes 3 attempts.
        """
        dead = closed_port()
        setups = [setup_message(1000 + n, "PP_2", dead) for n in range(100)]
        reply = await setup_from(LOCALHOST, self.reverse.port, *setups)
        self.assertEqual(json.loads(reply), {"type": "3", "privPolyId": "PP_2", "error":
                                             "setup refused: 64 servers are registered from 127.0.0.1, "
                                             "the most per host"})
        # 4 black holes and the first 60 of the flood.
        await self.reverse.wait_for(registered_line(1059, "PP_2", dead))
        self.assertIsNone(self.reverse.output.find(registered_line(1060, "PP_2", dead)))
        mark = self.reverse.mark()
        (answer,) = await ask(self.reverse.port, data_message("PP_2", "nobody home"))
        self.assertEqual(answer["error"], "3 servers of privacy policy PP_2 tried, none answered")
        self.assertEqual(len([line for line in self.reverse.output.lines[mark:] if "marked down" in line]), 3)


class ErrorTests(_ReverseTestCase):
    """
    Messages the reverse proxy cannot serve get a type 3 error; it keeps
    serving others.
    """

    async def setUp(self):
        self.reverse = await start_reverse(self)
        await start_backend(self, self.reverse, 100, "PP_1")

    async def test_no_server_for_policy(self):
        """
        A message for a policy nobody serves gets a type 3 error naming it, with the client's policy key spelling.
        """
        for key in ("privPolyId", "privPoliId"):
            (answer,) = await ask(self.reverse.port, data_message("PP_9", "nobody", key=key))
            self.assertEqual(answer, {"type": 3, "error": "no server registered for privacy policy PP_9", key: "PP_9"})
            await self.assert_served(self.reverse)

    async def test_not_json(self):
        """
        Bytes that are not JSON, or JSON that is not an object, get a type 3 error and the connection is closed.
        """
        for garbage in (b"\x00\xff garbage", b"GET / HTTP/1.1\r\n\r\n", b'{"type": }', b"[1]"):
            await self.assert_refused(self.reverse, garbage)
            await self.assert_served(self.reverse)

    async def test_too_large(self):
        """
        A 1 MiB object gets a type 3 error naming the size limit and the connection is closed.
        """
        huge = encode(data_message("PP_1", "a" * (1 << 20)))
        await self.assert_refused(self.reverse, huge, "bad message: message larger than 65536 bytes")
        await self.assert_served(self.reverse)

    async def test_missing_payload(self):
        """
        A data message without payload gets a type 3 error naming the field and the connection is closed.
        """
        message = {"type": 0, "srcid": 50, "privPoliId": "PP_1"}
        answer = await self.assert_refused(self.reverse, encode(message), "bad message: missing field 'payload'")
        self.assertEqual(answer.get("privPoliId"), "PP_1", answer)
        await self.assert_served(self.reverse)


class SendClientTests(_ReverseTestCase):
    """
    C{netproxy-client send} through a reverse proxy with server 100 on PP_1.
    """

    async def setUp(self):
        self.reverse = await start_reverse(self)
        await start_backend(self, self.reverse, 100, "PP_1")
        self.directory = fresh_directory(self)

    def packet_file(self, packets):
        path = os.path.join(self.directory, "mypkt.json")
        with open(path, "w") as f:
            json.dump(packets, f)
        return path

    async def test_three_messages(self):
        """
        A packet file with a list of three messages prints three acks from 100 and 'transmission OK' thrice, exit 0.
        """
        payloads = ["one", "two", "three"]
        pkt = self.packet_file([{"privPoliId": "PP_1", "payload": payload} for payload in payloads])
        result = await run_client("send", "--id", "50", "--revproc", f"127.0.0.1:{self.reverse.port}", "--pkt", pkt)
        self.assertEqual(result.code, 0, result)
        lines = result.out.splitlines()
        self.assertEqual(lines.count("transmission OK"), 3, result)
        prefix = "Receiving a response from the server 100 payload: "
        acks = [json.loads(line[len(prefix):]) for line in lines if line.startswith(prefix)]
        self.assertEqual([ack["payload"] for ack in acks], [sha1_hex(payload) for payload in payloads], result)
        self.assertEqual(sum(line.startswith("Sending message ") for line in lines), 3, result)

    async def test_no_server(self):
        """
        A message for a policy with no server prints 'transmission FAILED' and exits 1.
        """
        pkt = self.packet_file({"privPoliId": "PP_9", "payload": "nobody"})
        result = await run_client("send", "--id", "50", "--revproc", f"127.0.0.1:{self.reverse.port}", "--pkt", pkt)
        self.assertEqual(result.code, 1, result)
        self.assertIn("transmission FAILED", result.out, result)
        self.assertNotIn("transmission OK", result.out, result)


class ShutdownTests(_ReverseTestCase):
    """
    SIGTERM stops the reverse proxy and the servers cleanly.
    """

    async def test_sigterm_exits_zero(self):
        """
        SIGTERM makes a reverse proxy and a registered server that served a message exit with status 0.
        """
        reverse = await start_reverse(self)
        server = await start_backend(self, reverse, 100, "PP_1")
        await self.assert_served(reverse)
        for daemon in (server, reverse):
            daemon.send_signal(signal.SIGTERM)
            self.assertEqual(await daemon.wait_exit(), "exit code 0", daemon.output.transcript())
