"""
End-to-end tests of the clients: the C{netproxy-client} command and the
C{twistd netproxy client} role, run as real processes against real daemons.
"""

import os
import re

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
from tests.integration.http_client import start_proxy
from tests.integration.http_origin import MAX_AGE_60, Page, add_page, start_origin

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


class FetchClientTests(TestCase):
    """
    C{netproxy-client fetch URL --proxy HOST:PORT} against a real caching
    C{twistd netproxy http}.
    """

    timeout = 60

    async def cached_page(self):
        """
        Start an origin with a cacheable page and a proxy with a cache.

        :returns: C{(proxy, url, page)}.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "cached", page)
        proxy = await start_proxy(self, "--cache-dir", os.path.join(fresh_directory(self), "cache"))
        return proxy, url, page

    def report(self, result):
        """
        :returns: the fields of a successful fetch's report, by name.
        """
        self.assertEqual(result.code, 0, result)
        lines = result.out.splitlines()
        self.assertEqual([line.partition(": ")[0] for line in lines], ["Status", "Cache-Status", "Age", "Time"],
                         result)
        fields = dict(line.partition(": ")[::2] for line in lines)
        self.assertRegex(fields["Time"], r"^\d+\.\d{3} s$")
        return fields

    async def test_miss_then_hit(self):
        """
        A first fetch is a stored miss without an Age, the second a hit with one, served without the origin.
        """
        proxy, url, page = await self.cached_page()
        first = self.report(await run_client("fetch", url, "--proxy", f"127.0.0.1:{proxy.port}"))
        self.assertEqual((first["Status"], first["Cache-Status"], first["Age"]),
                         ("200 OK", "netproxy; fwd=uri-miss; fwd-status=200; stored", "-"))
        second = self.report(await run_client("fetch", "-p", f"127.0.0.1:{proxy.port}", url))
        self.assertEqual(second["Status"], "200 OK")
        self.assertRegex(second["Cache-Status"], r"^netproxy; hit; ttl=\d+$")
        self.assertRegex(second["Age"], r"^\d+$")
        self.assertEqual(len(page.seen), 1)
        await proxy.wait_for(r'"GET ' + re.escape(url) + r' HTTP/1\.1" 200 \d+ .* HIT ')

    async def test_error_status(self):
        """
        An error answered by the proxy is printed like any other status, with exit status 0.
        """
        proxy = await start_proxy(self, "--no-cache")
        result = await run_client("fetch", f"http://127.0.0.1:{closed_port()}/", "--proxy", f"127.0.0.1:{proxy.port}")
        fields = self.report(result)
        self.assertEqual((fields["Status"], fields["Cache-Status"], fields["Age"]), ("502 Bad Gateway", "-", "-"))

    async def test_proxy_refused(self):
        """
        A proxy that refuses the connection exits 1 with a one-line error naming it.
        """
        port = closed_port()
        result = await run_client("fetch", "http://127.0.0.1/", "--proxy", f"127.0.0.1:{port}")
        self.assertEqual(result.code, 1, result)
        self.assertEqual((result.out + result.err).splitlines(),
                         [f"error: could not connect to the proxy 127.0.0.1:{port}: connection refused"])

    async def test_usage_errors(self):
        """
        A bad URL or a bad --proxy exits 2 naming what was wrong.
        """
        result = await run_client("fetch", "example.com/page")
        self.assertEqual(result.code, 2, result)
        self.assertIn("URL", result.err)
        result = await run_client("fetch", "http://example.com/", "--proxy", "proxy:http")
        self.assertEqual(result.code, 2, result)
        self.assertIn("--proxy", result.err)


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

    async def test_fetch(self):
        """
        The client role fetches through a proxy and prints the same report as netproxy-client fetch.
        """
        origin = start_origin(self)
        url = add_page(origin, "page", Page(MAX_AGE_60))
        proxy = await start_proxy(self, "--no-cache")
        result = await run_twistd("-n", "--pidfile=", "netproxy", "client", "fetch", url, "--proxy",
                                  f"127.0.0.1:{proxy.port}", directory=fresh_directory(self))
        self.assertEqual(result.code, 0, result)
        lines = result.out.splitlines()
        for line in ("Status: 200 OK", "Cache-Status: -", "Age: -"):
            self.assertIn(line, lines, result)

    async def test_failure_exit_status(self):
        """
        The client role exits non-zero when its exchange fails, as netproxy-client does.
        """
        result = await run_twistd("-n", "--pidfile=", "netproxy", "client", "upper", "127.0.0.1", str(closed_port()), TEXT,
                                  directory=fresh_directory(self))
        self.assertIn("connection refused", result.out + result.err, result)
        self.assertNotEqual(result.code, 0, result)
