"""
End-to-end tests of the clients: the C{netproxy-client} command and the
C{twistd netproxy client} role, run as real processes against real daemons.
"""

from twisted.trial.unittest import TestCase

from tests.integration.daemon import (
    LISTEN,
    closed_port,
    fresh_directory,
    run_client,
    run_twistd,
    start_daemon,
    start_daemons,
)

TEXT = "hello, World! 123"
UPPER_LINE = "127.0.0.1 > HELLO, WORLD! 123\n"


class UpperClientTests(TestCase):
    """
    C{netproxy-client upper HOST PORT [--udp] [TEXT]}.
    """

    timeout = 60

    async def start_upper(self):
        return await start_daemon(self, "upper", "--tcp", "0", "--udp", "0")

    async def test_tcp_and_udp(self):
        """
        Over TCP and with --udp the client prints exactly 'HOST > REPLY' and exits 0.
        """
        upper = await self.start_upper()
        tcp = await run_client("upper", "127.0.0.1", str(upper.port), TEXT)
        self.assertEqual((tcp.code, tcp.out), (0, UPPER_LINE), tcp)
        udp = await run_client("upper", "127.0.0.1", str(upper.udp_port), "--udp", TEXT)
        self.assertEqual((udp.code, udp.out), (0, UPPER_LINE), udp)

    async def test_text_from_stdin(self):
        """
        Without TEXT the client sends a line read from standard input, over TCP and UDP.
        """
        upper = await self.start_upper()
        tcp = await run_client("upper", "127.0.0.1", str(upper.port), stdin=b"from stdin, ok?\n")
        self.assertEqual((tcp.code, tcp.out), (0, "127.0.0.1 > FROM STDIN, OK?\n"), tcp)
        udp = await run_client("upper", "--udp", "127.0.0.1", str(upper.udp_port), stdin=b"via udp\n")
        self.assertEqual((udp.code, udp.out), (0, "127.0.0.1 > VIA UDP\n"), udp)

    async def test_non_ascii_text(self):
        """
        Non-ASCII letters of the text come back unchanged.
        """
        upper = await self.start_upper()
        result = await run_client("upper", "127.0.0.1", str(upper.port), "stra\u00dfe \u00e9t\u00e9")
        self.assertEqual((result.code, result.out), (0, "127.0.0.1 > STRA\u00dfE \u00e9T\u00e9\n"), result)

    async def test_tcp_refused(self):
        """
        A refused TCP connection exits non-zero with a one-line error.
        """
        result = await run_client("upper", "127.0.0.1", str(closed_port()), TEXT)
        self.assertNotEqual(result.code, 0, result)
        lines = (result.out + result.err).splitlines()
        self.assertEqual(len(lines), 1, result)
        self.assertNotIn("Traceback", lines[0])

    async def test_udp_no_reply(self):
        """
        --udp --timeout 1 to a port where nothing listens exits non-zero with a one-line error.
        """
        result = await run_client("upper", "127.0.0.1", str(closed_port()), "--udp", "--timeout", "1", TEXT)
        self.assertNotEqual(result.code, 0, result)
        lines = (result.out + result.err).splitlines()
        self.assertEqual(len(lines), 1, result)

    async def test_usage_error(self):
        """
        A bad port exits with status 2 and names the option.
        """
        result = await run_client("upper", "127.0.0.1", "http", TEXT)
        self.assertEqual(result.code, 2, result)
        self.assertIn("port", result.err)


class RelayClientTests(TestCase):
    """
    C{netproxy-client relay --proxy HOST:PORT --to IP:PORT [TEXT]}.
    """

    timeout = 60

    async def test_done(self):
        """
        Through a relay to an ack server the client prints DONE and exits 0.
        """
        relay, ack = await start_daemons(self, ("relay", "--listen", LISTEN), ("ack", "--listen", LISTEN))
        result = await run_client("relay", "--proxy", f"127.0.0.1:{relay.port}", "--to", f"127.0.0.1:{ack.port}", "tgmr")
        self.assertEqual((result.code, result.out), (0, "DONE\n"), result)
        await ack.wait_for(r"received 'tgmr' from 127\.0\.0\.1:\d+$")

    async def test_random_word(self):
        """
        Without TEXT the client sends a random four-letter word.
        """
        relay, ack = await start_daemons(self, ("relay", "--listen", LISTEN), ("ack", "--listen", LISTEN))
        result = await run_client("relay", "--proxy", f"127.0.0.1:{relay.port}", "--to", f"127.0.0.1:{ack.port}")
        self.assertEqual((result.code, result.out), (0, "DONE\n"), result)
        await ack.wait_for(r"received '[a-z]{4}' from 127\.0\.0\.1:\d+$")

    async def test_blocked(self):
        """
        To a blocked destination the client prints 'Error, not allowed address' and exits 1.
        """
        ack = await start_daemon(self, "ack", "--listen", LISTEN)
        relay = await start_daemon(self, "relay", "--listen", LISTEN, "--block", f"127.0.0.1:{ack.port}")
        result = await run_client("relay", "--proxy", f"127.0.0.1:{relay.port}", "--to", f"127.0.0.1:{ack.port}")
        self.assertEqual((result.code, result.out), (1, "Error, not allowed address\n"), result)
        self.assertIsNone(ack.output.find("received"))

    async def test_relay_unreachable(self):
        """
        When the relay itself refuses the connection the client exits 1 with a one-line error.
        """
        result = await run_client("relay", "--proxy", f"127.0.0.1:{closed_port()}", "--to", "127.0.0.1:8888")
        self.assertEqual(result.code, 1, result)
        self.assertEqual(len((result.out + result.err).splitlines()), 1, result)


class TwistdClientTests(TestCase):
    """
    C{twistd -n netproxy client ...}: the same clients as a twistd role.
    """

    timeout = 60

    async def test_upper(self):
        """
        The client role prints the same 'HOST > REPLY' line and exits 0.
        """
        upper = await start_daemon(self, "upper", "--tcp", "0", "--udp", "0")
        result = await run_twistd("-n", "--pidfile=", "netproxy", "client", "upper", "127.0.0.1", str(upper.port), TEXT,
                                  directory=fresh_directory(self))
        self.assertEqual(result.code, 0, result)
        self.assertIn(UPPER_LINE.rstrip("\n"), result.out.splitlines(), result)

    async def test_failure_exit_status(self):
        """
        The client role exits non-zero when its exchange fails, as netproxy-client does.
        """
        result = await run_twistd("-n", "--pidfile=", "netproxy", "client", "upper", "127.0.0.1", str(closed_port()), TEXT,
                                  directory=fresh_directory(self))
        self.assertIn("connection refused", result.out + result.err, result)
        self.assertNotEqual(result.code, 0, result)
