"""
End-to-end tests of parent proxies: real C{twistd netproxy http} processes
chained with C{--parent}, each with its own cache, in front of the test
origin (L{tests.integration.http_origin}); curl and treq as clients.

What went where is read from each proxy's access log (its cache column
says HIT or MISS), from the requests the origin saw, and from the child's
log of parents that failed.
"""

import json
import os
import re
import shutil
from urllib.parse import quote

from twisted.internet.task import Clock
from twisted.web.client import ResponseNeverReceived
from twisted.trial.unittest import SkipTest

from netproxy.acl import RuleSet
from netproxy.http.parents import Parents, parse_parent
from tests.integration.daemon import (
    LOCALHOST,
    WAIT_TIMEOUT,
    closed_port,
    connect_client,
    run_command,
    start_daemon,
    start_server,
)
from tests.integration.http_client import PROXY_READY, CacheTestCase, access_line, fetch, proxy_agent, start_proxy
from tests.integration.http_origin import BODY, MAX_AGE_60, Page, add_page, body_of, start_origin
from tests.password_helpers import USERS

ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


def parent_url(proxy, credentials=""):
    """
    :returns: the C{--parent} value for the proxy daemon C{proxy}.
    """
    return f"http://{credentials}{LOCALHOST}:{proxy.port}"


def first_choice(parents, urls, wanted):
    """
    :returns: the first of C{urls} that the L{Parents} C{parents} sends to
        the daemon C{wanted} first.
    """
    name = f"{LOCALHOST}:{wanted.port}"
    return next(url for url in urls if parents.candidates(url.encode("ascii"))[0].name == name)


class ParentTestCase(CacheTestCase):
    """
    Helpers for chains of proxies.
    """

    async def curl(self, proxy, url, *args):
        """
        GET C{url} with curl through C{proxy}.

        :returns: C{(status, headers, body)}: the status as L{int}, the
            response head as L{str}.
        """
        curl = shutil.which("curl")
        if curl is None:
            raise SkipTest("curl is not installed")
        directory = self.cache_dir() + "-curl"
        os.makedirs(directory)
        body, head = os.path.join(directory, "body"), os.path.join(directory, "head")
        result = await run_command([curl, "--silent", "--show-error", "--noproxy", "", "--proxy",
                                    f"http://{LOCALHOST}:{proxy.port}", "--max-time", str(WAIT_TIMEOUT),
                                    "--output", body, "--dump-header", head, "--write-out", "%{http_code}", *args,
                                    url])
        self.assertEqual(result.code, 0, result)
        with open(body, "rb") as received, open(head, encoding="latin-1") as headers:
            return int(result.out), headers.read(), received.read()

    async def column(self, proxy, url, since, status=200):
        """
        :returns: the cache column of C{proxy}'s access line for a GET of
            C{url} with C{status}, logged after C{since}.
        """
        line = await proxy.wait_for(access_line("GET", url, status), since)
        return line.group(0).split()[-2]


class ChainTests(ParentTestCase):
    """
    Two netproxy instances stacked as a cache hierarchy.
    """

    async def test_hit_at_child(self):
        """
        curl through child and parent, both caching: the first fetch is a miss at both, the second a hit at the
        child that neither the parent nor the origin sees; each adds its own Via.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "chain", page)
        parent = await self.cached_proxy()
        child = await self.cached_proxy("--parent", parent_url(parent))
        await child.wait_for(r"forwarding through parent proxies 127\.0\.0\.1:\d+ \(0 --direct rules\), "
                             r"as netproxy-[0-9a-f]{8} in Via")
        since_child, since_parent = child.mark(), parent.mark()
        status, headers, body = await self.curl(child, url)
        self.assertEqual((status, body), (200, BODY))
        self.assertRegex(headers, r"(?im)^via: 1\.1 netproxy$(.|\n)*^via: 1\.1 netproxy-[0-9a-f]{8}$")
        self.assertEqual(await self.column(parent, url, since_parent), "MISS")
        self.assertEqual(await self.column(child, url, since_child), "MISS")
        since_child, since_parent = child.mark(), parent.mark()
        status, _, body = await self.curl(child, url)
        self.assertEqual((status, body), (200, BODY))
        self.assertEqual(await self.column(child, url, since_child), "HIT")
        self.assertEqual(len(page.seen), 1)
        self.assertIsNone(parent.output.find(access_line("GET", url, 200), since_parent))

    async def test_hit_at_parent(self):
        """
        With the child's cache off, the second fetch through the chain is a hit at the parent; the origin sees one
        request, which came through both proxies.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "parent-hit", page)
        parent = await self.cached_proxy()
        child = await start_proxy(self, "--no-cache", "--parent", parent_url(parent))
        for expected in ("MISS", "HIT"):
            since = parent.mark()
            status, _, body = await self.curl(child, url)
            self.assertEqual((status, body), (200, BODY))
            self.assertEqual(await self.column(parent, url, since), expected)
        [seen] = page.seen
        self.assertRegex(", ".join(seen.header("via")), r"^1\.1 netproxy-[0-9a-f]{8}, 1\.1 netproxy$")
        # The child without a cache adds no Cache-Status member: it did not handle the response as a cache.
        _, headers, _ = await self.curl(child, url)
        self.assertRegex(headers, r"(?im)^cache-status: netproxy; hit; ttl=\d+\r?$")
        self.assertEqual(len(re.findall(r"(?im)^cache-status:", headers)), 1)
        self.assertRegex(headers, r"(?im)^via: 1\.1 netproxy\r?$(.|\n)*^via: 1\.1 netproxy-[0-9a-f]{8}\r?$")

    async def test_cache_status_names(self):
        """
        Each cache of the chain names itself in Via and Cache-Status (the parent, without --parent, as netproxy;
        the child by its own pseudonym), the hop nearer the client last: a hit at the parent that the child
        stores, then a hit at the child.
        """
        origin = start_origin(self)
        page = Page(MAX_AGE_60)
        url = add_page(origin, "names", page)
        parent = await self.cached_proxy()
        child = await self.cached_proxy("--parent", parent_url(parent))
        status, _, _ = await self.curl(parent, url)
        self.assertEqual(status, 200)
        name = r"netproxy-[0-9a-f]{8}"
        status, headers, body = await self.curl(child, url)
        self.assertEqual((status, body), (200, BODY))
        self.assertRegex(headers, rf"(?im)^via: 1\.1 netproxy\r?$(.|\n)*^via: 1\.1 {name}\r?$")
        self.assertRegex(headers, rf"(?im)^cache-status: netproxy; hit; ttl=\d+\r?$(.|\n)*"
                                  rf"^cache-status: {name}; fwd=uri-miss; fwd-status=200; stored\r?$")
        status, headers, body = await self.curl(child, url)
        self.assertEqual((status, body), (200, BODY))
        self.assertRegex(headers, rf"(?im)^via: 1\.1 netproxy\r?$(.|\n)*^via: 1\.1 {name}\r?$")
        self.assertRegex(headers, rf"(?im)^cache-status: {name}; hit; ttl=\d+\r?$")
        self.assertEqual(len(page.seen), 1)

    async def test_parents_of_each_other(self):
        """
        Two instances each the other's parent: a request goes round once and is refused by the first as a loop,
        by its own Via name; the other instance's name was no loop to it.
        """
        origin = start_origin(self)
        first_port, second_port = closed_port(), closed_port()
        first, second = [
            await start_daemon(self, "http", "--listen", f"tcp:{port}:interface={LOCALHOST}", "--access-log", "-",
                               "--allow-local", "--parent", f"http://{LOCALHOST}:{other}", ready=PROXY_READY)
            for port, other in ((first_port, second_port), (second_port, first_port))]
        url = origin.url("/fixed?size=10")
        since_first, since_second = first.mark(), second.mark()
        status, _, body = await self.curl(first, url)
        self.assertEqual(status, 403)
        self.assertIn(b"forwarding loop", body)
        await first.wait_for(access_line("GET", url, 403), since_first)
        await second.wait_for(access_line("GET", url, 403), since_second)
        self.assertEqual(origin.connections, 0)

    async def test_parent_credentials(self):
        """
        A parent with --auth-file serves the child that gives its --parent credentials (percent-encoded), and the
        parent logs the user; a child without them, or with wrong ones, gets a 502 that says so.
        """
        origin = start_origin(self)
        url = origin.url("/fixed?size=500")
        auth_file = os.path.join(self.cache_dir() + "-auth")
        with open(auth_file, "w") as users:
            users.write(USERS)
        parent = await start_proxy(self, "--auth-file", auth_file)
        good = await start_proxy(self, "--parent", parent_url(parent, quote("alice") + ":" +
                                                                quote("alice's secret", safe="") + "@"))
        since = parent.mark()
        status, _, body = await self.curl(good, url)
        self.assertEqual((status, body), (200, body_of(500)))
        line = await parent.wait_for(access_line("GET", url, 200).replace(r" - \S+ ", " - alice "), since)
        self.assertIsNotNone(line)
        for credentials in ("", "alice:wrong@"):
            child = await start_proxy(self, "--parent", parent_url(parent, credentials))
            status, _, body = await self.curl(child, url)
            self.assertEqual(status, 502)
            self.assertIn(b"407 Proxy Authentication Required (check the credentials of its --parent)", body)

    async def test_connect_through_parent(self):
        """
        CONNECT through the child opens a tunnel through the parent's CONNECT to a TCP echo server: bytes go both
        ways, and both proxies log the tunnel.
        """
        echo = start_server(self, reply=lambda data: data)
        ports = ("--connect-port", str(echo.port))
        parent = await start_proxy(self, *ports)
        child = await start_proxy(self, *ports, "--parent", parent_url(parent))
        authority = b"%s:%d" % (LOCALHOST.encode(), echo.port)
        client = await connect_client(self, child.port, b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
                                      % (authority, authority))
        self.assertEqual(await client.wait_for_bytes(len(ESTABLISHED)), ESTABLISHED)
        client.transport.write(b"ping \x00\xff")
        self.assertEqual(await client.wait_for_bytes(len(ESTABLISHED) + 7), ESTABLISHED + b"ping \x00\xff")
        self.assertEqual(echo.connections[0].received, b"ping \x00\xff")
        client.transport.loseConnection()
        for proxy in (child, parent):
            await proxy.wait_for(rf'"CONNECT {authority.decode()} HTTP/1\.1" 200 7 ')


class FailoverTests(ParentTestCase):
    """
    Several parents share the URLs; one that dies gives its share to the others.
    """

    async def test_killed_parent(self):
        """
        With two parents, each URL goes to its own; once one is stopped, its URLs go to the other, whose own URLs
        stay, and the child logs the failure.
        """
        origin = start_origin(self)
        first, second = await start_proxy(self, "--no-cache"), await start_proxy(self, "--no-cache")
        child = await start_proxy(self, "--no-cache", "--parent", parent_url(first), "--parent", parent_url(second))
        chooser = Parents([parse_parent(parent_url(first)), parse_parent(parent_url(second))], RuleSet(), Clock())
        urls = [origin.url(f"/fixed?size=10&n={number}") for number in range(100)]
        url_first, url_second = first_choice(chooser, urls, first), first_choice(chooser, urls, second)
        agent = proxy_agent(child.port)
        for url, parent in ((url_first, first), (url_second, second)):
            since = parent.mark()
            response, received = await fetch(agent, b"GET", url)
            self.assertEqual((response.code, received.body), (200, body_of(10)))
            await parent.wait_for(access_line("GET", url, 200), since)
        self.assertTrue(await first.stop(), first.output.transcript())
        since_child = child.mark()
        for url in (url_first, url_second):
            since = second.mark()
            response, received = await fetch(proxy_agent(child.port), b"GET", url)
            self.assertEqual((response.code, received.body), (200, body_of(10)), child.output.transcript())
            await second.wait_for(access_line("GET", url, 200), since)
        await child.wait_for(rf"parent proxy 127\.0\.0\.1:{first.port} failed \(connection refused\): passed "
                             r"over for 1 seconds", since_child)

    async def test_all_parents_down(self):
        """
        With its only parent gone, the child answers 502 naming the parent, and serves again once it is back.
        """
        origin = start_origin(self)
        port = closed_port()
        child = await start_proxy(self, "--parent", f"http://{LOCALHOST}:{port}")
        status, _, body = await self.curl(child, origin.url("/fixed?size=10"))
        self.assertEqual(status, 502)
        self.assertIn(f"could not connect to parent proxy 127.0.0.1:{port}: connection refused".encode(), body)

    async def test_direct(self):
        """
        A destination named by --direct is fetched from the origin itself (only the child's Via), others through
        the parent.
        """
        origin, other = start_origin(self), start_origin(self)
        parent = await start_proxy(self)
        child = await start_proxy(self, "--parent", parent_url(parent), "--direct", f"*:{origin.port}")
        since = parent.mark()
        response, received = await fetch(proxy_agent(child.port), b"GET", origin.url("/echo?direct"))
        self.assertEqual(response.code, 200)
        via = [value for name, value in json.loads(received.body)["headers"] if name == "via"]
        self.assertRegex(", ".join(via), r"^1\.1 netproxy-[0-9a-f]{8}$")
        response, received = await fetch(proxy_agent(child.port), b"GET", other.url("/fixed?size=10"))
        self.assertEqual(response.code, 200)
        await parent.wait_for(access_line("GET", other.url("/fixed?size=10"), 200), since)
        self.assertIsNone(parent.output.find(access_line("GET", origin.url("/echo?direct"), 200), since))


class HostileParentTests(ParentTestCase):
    """
    A parent that misbehaves costs its request a 502, never the proxy.
    """

    async def hostile(self, reply):
        """
        Start a child whose only parent answers every request with C{reply}
        and closes, with an origin it reaches direct.

        :returns: C{(child, origin)}.
        """
        bad = start_server(self, reply=lambda data: reply, close_after_reply=True)
        origin = start_origin(self)
        child = await start_proxy(self, "--parent", f"http://{LOCALHOST}:{bad.port}", "--direct", f"*:{origin.port}")
        return child, origin

    async def still_serves(self, child, origin):
        """
        C{child} still answers requests, and has not crashed.
        """
        response, received = await fetch(proxy_agent(child.port), b"GET", origin.url("/fixed?size=10"))
        self.assertEqual((response.code, received.body), (200, body_of(10)))

    async def test_garbage(self):
        """A parent answering garbage gives the client a 502 naming it; the child serves on."""
        child, origin = await self.hostile(b"\x00\x01\x02 not http at all\r\n\r\n")
        status, _, body = await self.curl(child, "http://example.com/")
        self.assertEqual(status, 502)
        self.assertIn(b"parent proxy 127.0.0.1:", body)
        await self.still_serves(child, origin)

    async def test_closes_mid_head(self):
        """A parent that closes in the middle of its answer's head gives the client a 502; the child serves on."""
        child, origin = await self.hostile(b"HTTP/1.1 200 OK\r\nContent-Le")
        status, _, body = await self.curl(child, "http://example.com/")
        self.assertEqual(status, 502)
        self.assertIn(b"closed the connection before answering", body)
        await self.still_serves(child, origin)

    async def test_closes_mid_body(self):
        """A parent that closes in the middle of the body cuts the client's connection; the child serves on."""
        child, origin = await self.hostile(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        # The client's connection is cut: what it had not read yet may be lost with it.
        try:
            response, received = await fetch(proxy_agent(child.port), b"GET", "http://example.com/")
        except ResponseNeverReceived:
            pass
        else:
            self.assertEqual((response.code, received.complete), (200, False))
        await child.wait_for(r"response from example\.com to 127\.0\.0\.1:\d+ cut short")
        await self.still_serves(child, origin)
