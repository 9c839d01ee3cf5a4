"""
End-to-end tests of a SOCKS5 parent: a real C{twistd netproxy http} with
C{--parent socks5://...} chained to a real C{twistd netproxy socks}, in
front of the test origin and a TCP echo server; curl and raw sockets as
clients.  Also parents that answer what no SOCKS5 server should.
"""

from urllib.parse import quote

from tests.integration.daemon import LISTEN, LOCALHOST, closed_port, connect_client, start_daemon, start_server
from tests.integration.http_origin import BODY, MAX_AGE_60, Page, add_page, body_of, start_origin
from tests.integration.test_http_parents import ESTABLISHED, ParentTestCase
from tests.password_helpers import USERS

SOCKS_READY = ("SocksFactory",)


class SocksParentTests(ParentTestCase):
    """
    The HTTP proxy forwarding through the SOCKS role.
    """

    async def socks(self, *args):
        """
        Start the SOCKS role, allowing the tests' local destinations, with C{args}.

        :returns: the L{tests.integration.daemon.Daemon}.
        """
        return await start_daemon(self, "socks", "--listen", LISTEN, "--access-log", "-", "--allow-local", *args,
                                  ready=SOCKS_READY)

    async def test_cached_through_socks(self):
        """
        A GET goes through the SOCKS parent to the origin (which sees the request in origin-form) and is stored:
        the second is a HIT at the HTTP proxy, which neither the SOCKS parent nor the origin sees.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "socks", page)
        socks = await self.socks()
        child = await self.cached_proxy("--parent", f"socks5://{LOCALHOST}:{socks.port}")
        await child.wait_for(rf"forwarding through parent proxies socks5://127\.0\.0\.1:{socks.port} ")
        for expected in ("MISS", "HIT"):
            since = child.mark()
            status, headers, body = await self.curl(child, url)
            self.assertEqual((status, body), (200, BODY))
            self.assertEqual(await self.column(child, url, since), expected)
        [seen] = page.seen
        self.assertRegex(", ".join(seen.header("via")), r"^1\.1 netproxy-[0-9a-f]{8}$")
        await socks.wait_for(rf"CONNECT 127\.0\.0\.1:{origin.port}")

    async def test_credentials(self):
        """
        A SOCKS parent with --auth-file serves the proxy that logs in with the --parent credentials; wrong ones
        get the client a 502 that says so.
        """
        origin = start_origin(self)
        url = origin.url("/fixed?size=300")
        auth_file = self.cache_dir() + "-users"
        with open(auth_file, "w") as users:
            users.write(USERS)
        socks = await self.socks("--auth-file", auth_file)
        password = quote("alice's secret", safe="")
        good = await start_daemon_http(self, f"socks5://alice:{password}@{LOCALHOST}:{socks.port}")
        status, _, body = await self.curl(good, url)
        self.assertEqual((status, body), (200, body_of(300)))
        for credentials in ("alice:wrong@", ""):
            bad = await start_daemon_http(self, f"socks5://{credentials}{LOCALHOST}:{socks.port}")
            status, _, body = await self.curl(bad, url)
            self.assertEqual(status, 502)
            self.assertIn(b"parent proxy socks5://127.0.0.1:", body)

    async def test_connect(self):
        """A CONNECT through the proxy is a SOCKS CONNECT to the echo server: bytes go both ways."""
        echo = start_server(self, reply=lambda data: data)
        socks = await self.socks()
        child = await start_daemon_http(self, f"socks5://{LOCALHOST}:{socks.port}", "--connect-port", str(echo.port))
        authority = b"%s:%d" % (LOCALHOST.encode(), echo.port)
        client = await connect_client(self, child.port, b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                                      % (authority, authority))
        self.assertEqual(await client.wait_for_bytes(len(ESTABLISHED)), ESTABLISHED)
        client.transport.write(b"ping \x00\xff")
        self.assertEqual(await client.wait_for_bytes(len(ESTABLISHED) + 7), ESTABLISHED + b"ping \x00\xff")
        client.transport.loseConnection()
        await child.wait_for(rf'"CONNECT {authority.decode()} HTTP/1\.1" 200 7 ')

    async def test_parent_killed(self):
        """With the SOCKS parent killed, the client gets a 502 naming it, and the parent is marked down."""
        origin = start_origin(self)
        socks = await self.socks()
        child = await start_daemon_http(self, f"socks5://{LOCALHOST}:{socks.port}")
        status, _, _ = await self.curl(child, origin.url("/fixed?size=10"))
        self.assertEqual(status, 200)
        socks.kill()
        await socks.wait_exit()
        since = child.mark()
        status, _, body = await self.curl(child, origin.url("/fixed?size=10&again"))
        self.assertEqual(status, 502)
        self.assertIn(f"parent proxy socks5://127.0.0.1:{socks.port}".encode(), body)
        await child.wait_for(rf"parent proxy socks5://127\.0\.0\.1:{socks.port} failed \(.*\): passed over for 1 "
                             r"seconds", since)

    async def test_origin_refused(self):
        """The SOCKS parent's reply 5 (the origin refused) is a 502 naming it; the parent is not marked down."""
        socks = await self.socks()
        child = await start_daemon_http(self, f"socks5://{LOCALHOST}:{socks.port}")
        since = child.mark()
        status, _, body = await self.curl(child, f"http://{LOCALHOST}:{closed_port()}/")
        self.assertEqual(status, 502)
        self.assertIn(b"5 (connection refused)", body)
        self.assertIsNone(child.output.find("failed", since))


async def start_daemon_http(testcase, parent, *args):
    """
    Start an HTTP proxy without a cache whose parent is C{parent}.

    :returns: the L{tests.integration.daemon.Daemon}.
    """
    from tests.integration.http_client import start_proxy

    return await start_proxy(testcase, "--no-cache", "--parent", parent, *args)


class HostileSocksParentTests(ParentTestCase):
    """
    A SOCKS5 parent that misbehaves costs its request a 502, never the proxy.
    """

    async def test_hostile(self):
        """Garbage, a wrong version and a reply cut short each get a 502 naming the parent; the proxy serves on."""
        origin = start_origin(self)
        for answer, words in ((b"HTTP/1.1 400 Bad Request\r\n\r\n", b"version 72"),
                              (b"\x04\x00", b"version 4, not 5"),
                              (b"\x05\x00\x05\x00\x00\x03\xffabc", b"closed the connection before answering CONNECT")):
            bad = start_server(self, reply=lambda data, answer=answer: answer, close_after_reply=True)
            child = await start_daemon_http(self, f"socks5://{LOCALHOST}:{bad.port}", "--direct", f"*:{origin.port}")
            status, _, body = await self.curl(child, "http://example.invalid/")
            self.assertEqual(status, 502, body)
            self.assertIn(words, body)
            status, _, body = await self.curl(child, origin.url("/fixed?size=10"))
            self.assertEqual((status, body), (200, body_of(10)))
