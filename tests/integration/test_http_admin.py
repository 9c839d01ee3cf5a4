"""
End-to-end tests of the HTTP proxy's own pages: a real C{twistd netproxy
http} with a cache, in front of the test origin
(L{tests.integration.http_origin}); requests go through it, then its
C{/metrics} page is scraped directly (origin-form, over a raw socket, as
Prometheus does), parsed with prometheus_client, and its counters compared
with what was done; an ordinary HTTP client (treq) reads the pages too.
"""

import re

from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.web.client import Agent

from tests.integration.daemon import LISTEN, LOCALHOST, WAIT_TIMEOUT, raw_exchange
from tests.integration.http_client import CacheTestCase, HttpTestCase, parse_replies, start_proxy
from tests.integration.http_origin import BODY, MAX_AGE_60, Page, add_page, start_origin
from tests.test_instruments import parse, samples

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# A client outside --admin 127.0.0.1/32, still on loopback.
OUTSIDER = "127.0.0.2"


def page_request(path, headers=b""):
    """
    :returns: an origin-form GET for one of the proxy's pages, closing the
        connection after it, with more C{headers}.
    """
    return b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s\r\n" % (path, headers)


class PageTests(CacheTestCase):
    """
    /metrics and /status, asked for from loopback.
    """

    async def get_page(self, proxy, path):
        """
        GET C{path} from C{proxy} on a connection of its own.

        :returns: the L{tests.integration.test_http.Reply}.
        """
        reply = await raw_exchange(proxy.port, page_request(path), until_closed=True)
        [page] = parse_replies(reply.data)
        self.assertTrue(reply.closed)
        return page

    async def scrape(self, proxy):
        """
        Scrape C{proxy}'s /metrics.

        :returns: C{({(sample name, sorted label pairs): value}, page body)}.
        """
        page = await self.get_page(proxy, b"/metrics")
        self.assertEqual((page.status, page.header("content-type")), (200, [CONTENT_TYPE]),
                         proxy.output.transcript())
        return samples(parse(page.body.decode("utf-8"))), page.body

    async def test_scrape(self):
        """
        After a miss and a hit, /metrics counts them, the requests and the bytes, the entry stored and the upstream
        connection with its timings.
        """
        origin = start_origin(self)
        url = add_page(origin, "counted", Page(MAX_AGE_60))
        proxy = await self.cached_proxy()
        before, before_page = await self.scrape(proxy)
        self.assertEqual(before[("netproxy_cache_entries", ())], 0)
        await self.assert_stored(proxy, url)
        await self.assert_hit(proxy, url)
        after, _ = await self.scrape(proxy)

        def moved(name, **labels):
            key = (name, tuple(sorted(labels.items())))
            return after.get(key, 0) - before.get(key, 0)

        # The first scrape is counted once its page was sent.
        self.assertEqual(moved("netproxy_http_requests_total", method="GET", status="200"), 3)
        self.assertEqual((moved("netproxy_cache_requests_total", result="MISS"),
                          moved("netproxy_cache_requests_total", result="HIT"),
                          moved("netproxy_cache_requests_total", result="BYPASS")), (1, 1, 1))
        self.assertEqual(moved("netproxy_http_sent_bytes_total"), 2 * len(BODY) + len(before_page))
        self.assertGreater(moved("netproxy_http_received_bytes_total"), 2 * len(b"GET " + url.encode("ascii")))
        self.assertEqual(after[("netproxy_cache_entries", ())], 1)
        self.assertGreater(after[("netproxy_cache_stored_bytes", ())], len(BODY))
        self.assertEqual((moved("netproxy_http_upstream_connect_seconds_count"),
                          moved("netproxy_http_upstream_response_seconds_count")), (1, 1))
        self.assertEqual(moved("netproxy_http_upstream_response_seconds_bucket", le="+Inf"), 1)
        self.assertGreater(after[("netproxy_http_upstream_response_seconds_sum", ())], 0)
        # The origin keeps the connection open, idle in the pool.
        self.assertEqual((after[("netproxy_http_upstream_connections", ())],
                          after[("netproxy_http_upstream_idle_connections", ())]), (1, 1))
        # At least the scraping connection.
        self.assertGreaterEqual(after[("netproxy_http_client_connections", ())], 1)
        # The reactor's stalls (the page may come before the monitor's first
        # check: no value is certain but its range).
        self.assertGreaterEqual(after[("netproxy_reactor_longest_stall_seconds", ())], 0)
        self.assertIn(("netproxy_reactor_stalls_total", (("over", "0.05"),)), after)
        await proxy.wait_for(r'"GET /metrics HTTP/1\.1" 200 \d+ .* BYPASS ')

    async def test_status(self):
        """/status is an HTML page naming the cache's entries."""
        origin = start_origin(self)
        url = add_page(origin, "listed", Page(MAX_AGE_60))
        proxy = await self.cached_proxy()
        await self.assert_stored(proxy, url)
        page = await self.get_page(proxy, b"/status")
        self.assertEqual((page.status, page.header("content-type")), (200, ["text/html; charset=utf-8"]))
        text = page.body.decode("utf-8")
        self.assertTrue(text.startswith("<!DOCTYPE html>"), text)
        self.assertIn("<tr><th>Cache</th><td>1 entries, ", text)

    async def test_http_client(self):
        """An ordinary HTTP client (treq, origin-form from loopback) gets /metrics and /status with their types."""
        proxy = await self.cached_proxy()
        client = HTTPClient(Agent(reactor))
        for path, content_type in ((b"/metrics", CONTENT_TYPE), (b"/status", "text/html; charset=utf-8")):
            response = await client.get(f"http://127.0.0.1:{proxy.port}{path.decode()}", timeout=WAIT_TIMEOUT)
            body = await response.content()
            self.assertEqual((response.code, response.headers.getRawHeaders(b"content-type")),
                             (200, [content_type.encode()]), proxy.output.transcript())
            self.assertIn(b"netproxy_http_requests_total" if path == b"/metrics" else b"<!DOCTYPE html>", body)

    async def test_not_admin(self):
        """With --admin naming another network, loopback gets 403 for /metrics, and no metrics."""
        proxy = await start_proxy(self, "--no-cache", "--admin", "10.0.0.0/8")
        reply = await raw_exchange(proxy.port, page_request(b"/metrics"), until_closed=True)
        self.check_error(reply.data, reply.closed, 403, r"--admin networks only, not from 127\.0\.0\.1",
                         page_request(b"/metrics"))
        self.assertNotIn(b"netproxy_", reply.data)


class LoopTests(HttpTestCase):
    """
    The proxy's pages cannot be reached through the proxy: with
    C{--admin 127.0.0.1/32}, a client at 127.0.0.2 asking the proxy to fetch
    them from itself gets a 403 for a forwarding loop, as it does when
    asking directly (where it is not an admin).
    """

    async def refused(self, proxy, request, cause, source=OUTSIDER, port=None):
        """
        C{request} from C{source} gets 403 naming C{cause}, and none of the
        proxy's metrics.
        """
        reply = await raw_exchange(port or proxy.port, request, until_closed=True, source=source)
        self.check_error(reply.data, reply.closed, 403, cause, request)
        self.assertNotIn(b"netproxy_", reply.data)

    async def test_page_through_the_proxy(self):
        """GET http://PROXY/metrics from 127.0.0.2 is a loop (403), by address or by a name resolving to it."""
        proxy = await start_proxy(self, "--no-cache", "--admin", "127.0.0.1/32")
        await self.refused(proxy, page_request(b"/metrics"), r"--admin networks only, not from 127\.0\.0\.2")
        for authority in (f"127.0.0.1:{proxy.port}", f"127.1:{proxy.port}", f"0.0.0.0:{proxy.port}"):
            request = b"GET http://%s/metrics HTTP/1.1\r\nHost: x\r\n\r\n" % (authority.encode(),)
            await self.refused(proxy, request, "forwarding loop: .* is this proxy itself")
        # localhost resolves to 127.0.0.1 from /etc/hosts: nothing leaves this host.
        request = b"GET http://localhost:%d/status HTTP/1.1\r\n\r\n" % (proxy.port,)
        await self.refused(proxy, request, r"resolves to 127\.0\.0\.1, .*where this proxy listens: a forwarding loop")
        self.assertIsNone(proxy.output.find(r"\[-\] .*netproxy_http"))

    async def test_arriving_back(self):
        """A page request carrying netproxy's Via came through a netproxy: 403, even from an admin address."""
        proxy = await start_proxy(self, "--no-cache", "--admin", "127.0.0.1/32")
        await self.refused(proxy, page_request(b"/metrics", b"Via: 1.1 netproxy\r\n"),
                           "this request has already passed through netproxy", source=LOCALHOST)
        await proxy.wait_for(r"#warn\] .*403 forwarding loop")

    async def test_several_listeners(self):
        """With two --listen on port 0, a request on one to the port actually bound by the other is a loop too."""
        proxy = await start_proxy(self, "--no-cache", "--admin", "127.0.0.1/32", "--listen", LISTEN)
        started = r"ProxyFactory starting on (\d+)"
        await proxy.wait_for(started)
        first_line = next(index for index, line in enumerate(proxy.output.lines) if re.search(started, line))
        await proxy.wait_for(started, since=first_line + 1)
        ports = [int(match.group(1)) for match in map(re.compile(started).search, proxy.output.lines) if match]
        self.assertEqual(len(set(ports)), 2, ports)
        first, second = ports
        request = b"GET http://127.0.0.1:%d/metrics HTTP/1.1\r\n\r\n" % (second,)
        await self.refused(proxy, request, "forwarding loop", port=first)
