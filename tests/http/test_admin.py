"""
Tests for L{netproxy.http.admin} and L{netproxy.http.proxy_metrics}: the HTTP
proxy's own pages, C{/metrics} (parsed with prometheus_client) and
C{/status}, asked for in origin-form by clients of its C{--admin}
networks, and the counters they show moving as requests go through an
in-memory proxy with an in-memory cache on a L{MemoryReactorClock}.
"""

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.cache.responses import Cache
from netproxy.http.cache.producers import next_turn
from netproxy.http import admin
from netproxy.http.proxy import ProxyFactory
from netproxy.instruments import CONTENT_TYPE
from netproxy.testing import MemoryStore, connect, fail_connection
from tests.http_helpers import CLIENT, FRESH, OK, CacheTestCase, get, split_response
from tests.test_instruments import parse, samples

OUTSIDER = IPv4Address("TCP", "10.0.0.1", 40001)
METRICS = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:3128\r\n\r\n"
STATUS = b"GET /status HTTP/1.1\r\nHost: 127.0.0.1:3128\r\n\r\n"
# Every family the page shows, with its type (prometheus_client names a
# counter's family without _total).
FAMILIES = {
    "netproxy_start_time_seconds": "gauge",
    "netproxy_http_requests": "counter",
    "netproxy_http_received_bytes": "counter",
    "netproxy_http_sent_bytes": "counter",
    "netproxy_http_upstream_connect_seconds": "histogram",
    "netproxy_http_upstream_response_seconds": "histogram",
    "netproxy_http_client_connections": "gauge",
    "netproxy_http_upstream_connections": "gauge",
    "netproxy_http_upstream_idle_connections": "gauge",
    "netproxy_cache_requests": "counter",
    "netproxy_cache_collapsed": "counter",
    "netproxy_cache_stored_bytes": "gauge",
    "netproxy_cache_entries": "gauge",
    "netproxy_cache_evictions": "counter",
    "netproxy_http_throttled_bytes": "counter",
    "netproxy_http_throttled_seconds": "counter",
    "netproxy_http_rate_limited_requests": "counter",
    "netproxy_reactor_longest_stall_seconds": "gauge",
    "netproxy_reactor_stalls": "counter",
}


def page_request(path=b"/metrics", method=b"GET", headers=b"", version=b"1.1"):
    """
    :returns: a request for one of the proxy's pages, in origin-form.
    """
    return b"%s %s HTTP/%s\r\nHost: 127.0.0.1:3128\r\n%s\r\n" % (method, path, version, headers)


class AdminTestCase(CacheTestCase):
    """
    A caching proxy, its cache given to it when it is made (as
    L{netproxy.tap} does), admitting loopback and C{10.0.0.0/8}, with
    C{--admin} left to its default (loopback).
    """

    store_size = 10 * 1024 * 1024

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.store = MemoryStore(self.store_size, scheduler=next_turn(self.reactor))
        self.factory = self.make_factory(cache=Cache(self.store))
        self.protocol, self.transport = connect(self.factory, CLIENT)
        self.events = []
        self.factory.access_log.add_observer(self.events.append)
        self.origins = []

    def make_factory(self, **kwargs):
        """
        :returns: a L{ProxyFactory} on C{self.reactor} with C{kwargs}.
        """
        return ProxyFactory(self.reactor, allow=RuleSet([parse_rule("127.0.0.0/8"), parse_rule("10.0.0.0/8"),
                                                         parse_rule("::1")]),
                            rules=RuleSet([parse_rule("127.0.0.66")]), connect_ports={443}, timeout=30,
                            connect_timeout=10, **kwargs)

    def ask(self, request=METRICS, peer=CLIENT, factory=None):
        """
        Send C{request} on a new client connection from C{peer}.

        :returns: the client's transport.
        """
        _, transport = connect(factory or self.factory, peer)
        transport.protocol.dataReceived(request)
        return transport

    def scrape_page(self, factory=None):
        """
        GET /metrics from loopback, on a connection of its own, closed after.

        :returns: C{({(sample name, sorted label pairs): value}, page)}.
        """
        transport = self.ask(factory=factory)
        status, _, body = split_response(transport.value())
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        transport.loseConnection()
        return samples(parse(body.decode("utf-8"))), body

    def scrape(self, factory=None):
        """
        See L{scrape_page}.

        :returns: the samples.
        """
        return self.scrape_page(factory)[0]

    def value(self, scraped, name, **labels):
        """
        :returns: the value of sample C{name} with C{labels} in C{scraped}.
        """
        return scraped[name, tuple(sorted(labels.items()))]


class PageTests(AdminTestCase):
    """
    GET and HEAD of /metrics and /status, from loopback.
    """

    def test_metrics(self):
        """GET /metrics is 200 in the Prometheus text format, uncacheable, with every family typed."""
        transport = self.ask()
        status, headers, body = split_response(transport.value())
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertIn((b"Content-Type", CONTENT_TYPE), headers)
        self.assertIn((b"Content-Length", b"%d" % (len(body),)), headers)
        self.assertIn((b"Cache-Control", b"no-store"), headers)
        families = parse(body.decode("utf-8"))
        self.assertEqual({name: family.type for name, family in families.items()}, FAMILIES)
        self.assertEqual(self.reactor.tcpClients, [])

    def test_every_family_has_samples(self):
        """
        A fresh proxy's page already shows every family but the one labelled
        by what happened (method and status) with a value, so the first
        scrape sees them at 0.
        """
        families = parse(split_response(self.ask().value())[2].decode("utf-8"))
        self.assertEqual(sorted(name for name, family in families.items() if not family.samples),
                         ["netproxy_http_requests"])

    def test_query(self):
        """A query string after /metrics is ignored."""
        status, headers, _ = split_response(self.ask(page_request(b"/metrics?name[]=x")).value())
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertIn((b"Content-Type", CONTENT_TYPE), headers)

    def test_head(self):
        """HEAD /metrics has the head of the GET, with its Content-Length, and no body."""
        transport = self.ask(page_request(method=b"HEAD"))
        head, separator, body = transport.value().partition(b"\r\n\r\n")
        self.assertEqual((separator, body), (b"\r\n\r\n", b""))
        _, headers, _ = split_response(head)
        self.assertIn((b"Content-Type", CONTENT_TYPE), headers)
        length = int(dict(headers)[b"Content-Length"])
        self.assertGreater(length, 1000)
        self.assertTrue(transport.connected)

    def test_head_status(self):
        """HEAD /status has the HTML content type and no body."""
        value = self.ask(page_request(b"/status", method=b"HEAD")).value()
        self.assertTrue(value.endswith(b"\r\n\r\n"), value)
        self.assertIn(b"Content-Type: text/html; charset=utf-8\r\n", value)

    def test_status(self):
        """GET /status is an HTML page for people, with the cache's entries and size against its limit."""
        self.fetch(answer=FRESH)
        self.fetch()
        status, headers, body = split_response(self.ask(STATUS).value())
        self.assertEqual(status, b"HTTP/1.1 200 OK")
        self.assertIn((b"Content-Type", b"text/html; charset=utf-8"), headers)
        self.assertIn((b"Content-Length", b"%d" % (len(body),)), headers)
        self.assertIn((b"Cache-Control", b"no-store"), headers)
        page = body.decode("utf-8")
        self.assertTrue(page.startswith("<!DOCTYPE html>"), page)
        self.assertIn(f"<tr><th>Cache</th><td>1 entries, {self.store.size} bytes of 10.0 MiB</td></tr>", page)
        self.assertIn("<tr><th>Cache hits</th><td>1 of 2 consulted (50.0%)</td></tr>", page)
        self.assertIn("<tr><th>Requests</th><td>2</td></tr>", page)
        self.assertIn('<a href="/metrics">', page)

    def test_status_without_cache(self):
        """With --no-cache, /status says the cache is off and /metrics shows an empty cache."""
        factory = self.make_factory()
        page = split_response(self.ask(STATUS, factory=factory).value())[2].decode("utf-8")
        self.assertIn("<tr><th>Cache</th><td>off (--no-cache)</td></tr>", page)
        self.assertNotIn("Evictions", page)
        scraped = self.scrape(factory)
        self.assertEqual((scraped[("netproxy_cache_entries", ())], scraped[("netproxy_cache_stored_bytes", ())]),
                         (0, 0))
        self.assertIn(("netproxy_cache_requests_total", (("result", "HIT"),)), scraped)

    def test_status_rate_limits(self):
        """With rate limits, /status says how many addresses it follows, how long they were paused, and the 429s."""
        from netproxy.rate_limit import RateLimiter

        self.factory.rate_limiter = limiter = RateLimiter(self.reactor, byte_rate=1024 * 1024, request_rate=10)
        limiter.throttled_seconds, limiter.refused_requests = 2.25, 3
        page = split_response(self.ask(STATUS).value())[2].decode("utf-8")
        self.assertIn("<tr><th>Rate limits</th><td>1 client addresses followed, paused 2.2 s in all, 3 requests "
                      "refused (429)</td></tr>", page)
        self.factory.rate_limiter = None
        page = split_response(self.ask(STATUS).value())[2].decode("utf-8")
        self.assertNotIn("Rate limits", page)

    def test_status_escaped(self):
        """What the status page shows is HTML-escaped."""
        self.patch(admin, "_duration", lambda seconds: "<script>&'\"")
        page = split_response(self.ask(STATUS).value())[2].decode("utf-8")
        self.assertIn("<td>&lt;script&gt;&amp;&#x27;&quot;</td>", page)
        self.assertNotIn("<script>", page)

    def test_keep_alive(self):
        """After a page the connection stays open: pipelined pages, then a proxied request, are answered in turn."""
        transport = self.ask(METRICS + STATUS + get())
        self.answer(self.upstream(), OK)
        value = transport.value()
        self.assertEqual(value.count(b"HTTP/1.1 200 OK\r\n"), 3)
        self.assertLess(value.index(CONTENT_TYPE), value.index(b"<!DOCTYPE html>"))
        self.assertTrue(value.endswith(b"\r\n\r\nhi"))
        self.assertTrue(transport.connected)

    def test_connection_close(self):
        """A page asked for with Connection: close says so, and the connection is closed after it."""
        transport = self.ask(page_request(headers=b"Connection: close\r\n"))
        _, headers, _ = split_response(transport.value())
        self.assertIn((b"Connection", b"close"), headers)
        self.assertFalse(transport.connected)

    def test_http10(self):
        """An HTTP/1.0 page request is answered, then closed."""
        transport = self.ask(page_request(version=b"1.0"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertFalse(transport.connected)

    def test_http10_keep_alive(self):
        """An HTTP/1.0 page request with Connection: keep-alive is told, as for proxied responses, and kept."""
        transport = self.ask(page_request(version=b"1.0", headers=b"Connection: keep-alive\r\n"))
        _, headers, _ = split_response(transport.value())
        self.assertTrue(transport.connected)
        self.assertIn((b"Connection", b"keep-alive"), headers)

    def test_access_logged(self):
        """A page request is one access event: client, method, path, 200, body size, not consulting the cache."""
        transport = self.ask()
        body = split_response(transport.value())[2]
        [event] = self.events
        self.assertEqual((event["client"], event["method"], event["url"], event["status"], event["size"],
                          event["cache"]), ("127.0.0.1", b"GET", b"/metrics", 200, len(body), "BYPASS"))

    def test_ipv6_loopback(self):
        """::1 is of the default --admin networks."""
        transport = self.ask(peer=IPv6Address("TCP", "::1", 40000))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"), transport.value())


class RefusalTests(AdminTestCase):
    """
    Pages for --admin networks only, GET and HEAD only; other origin-form
    paths are not proxy requests.
    """

    def test_not_admin(self):
        """A client admitted by --allow but not of an --admin network gets 403 for either page."""
        for path in (b"/metrics", b"/status"):
            self.events = []
            transport = self.ask(page_request(path), peer=OUTSIDER)
            self.assertError(403, f"the page {path.decode()} is allowed from --admin networks only, not from 10.0.0.1",
                             transport)
            self.assertNotIn(b"netproxy_", transport.value())

    def test_admin_option(self):
        """--admin decides: a client of its network gets the page, loopback outside it gets 403."""
        factory = self.make_factory(cache=Cache(self.store), admin=RuleSet([parse_rule("10.0.0.0/8")]))
        self.assertTrue(self.ask(peer=OUTSIDER, factory=factory).value().startswith(b"HTTP/1.1 200 OK\r\n"))
        self.assertError(403, "not from 127.0.0.1", self.ask(factory=factory))

    def test_not_admin_counted(self):
        """A refused page request is counted with its 403."""
        self.ask(peer=OUTSIDER)
        self.assertEqual(self.value(self.scrape(), "netproxy_http_requests_total", method="GET", status="403"), 1)

    def test_other_path(self):
        """An origin-form request for another path is not a proxy request: 400."""
        self.assertError(400, "not a proxy request: /other", self.ask(page_request(b"/other")))

    def test_other_method(self):
        """POST /metrics is 405."""
        self.assertError(405, "/metrics answers GET and HEAD only", self.ask(page_request(method=b"POST")))

    def test_body(self):
        """A page request with a body is 400."""
        self.assertError(400, "the request must have no body",
                         self.ask(page_request(headers=b"Content-Length: 3\r\n") + b"abc"))

    def test_body_message(self):
        """The 400 for a page request with a body reads as a sentence, naming the page."""
        transport = self.ask(page_request(headers=b"Content-Length: 3\r\n") + b"abc")
        body = split_response(transport.value())[2]
        self.assertIn(b"/metrics", body)
        self.assertNotIn(b"a the page", body)

    def test_absolute_form_forwarded(self):
        """An absolute-form request for /metrics is a proxy request like any other: it goes to the origin."""
        transport = self.ask(get(b"/metrics"))
        self.assertEqual(self.upstream().value().split(b"\r\n")[0], b"GET /metrics HTTP/1.1")
        self.assertEqual(transport.value(), b"")


class CounterTests(AdminTestCase):
    """
    The counters on /metrics move as requests go through the proxy.
    """

    def test_requests_by_method_and_status(self):
        """Requests are counted by method and status: proxied, refused, and the pages themselves."""
        before = self.scrape()
        self.fetch(answer=OK)
        self.fetch(get(b"/gone", method=b"DELETE"), answer=b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        self.ask(b"GET http://127.0.0.66/ HTTP/1.1\r\n\r\n")
        after = self.scrape()
        count = "netproxy_http_requests_total"
        # The first scrape is counted too, once its page was sent.
        self.assertEqual(before.get((count, (("method", "GET"), ("status", "200")))), None)
        self.assertEqual(self.value(after, count, method="GET", status="200"), 2)
        self.assertEqual(self.value(after, count, method="DELETE", status="404"), 1)
        self.assertEqual(self.value(after, count, method="GET", status="403"), 1)

    def test_no_status(self):
        """A request whose client left before any response is counted with status -."""
        self.send(get())
        self.upstream()
        self.transport.loseConnection()
        self.assertEqual(self.value(self.scrape(), "netproxy_http_requests_total", method="GET", status="-"), 1)

    def test_invented_method(self):
        """Methods other than the standard ones are counted together as OTHER, bounding the labels."""
        for method in (b"BREW", b"WHEN"):
            self.fetch(get(method=method), answer=OK)
        self.fetch(get(method=b"PATCH"), answer=OK)
        scraped = self.scrape()
        methods = {dict(labels)["method"] for name, labels in scraped if name == "netproxy_http_requests_total"}
        self.assertEqual(methods, {"OTHER", "PATCH"})
        self.assertEqual(self.value(scraped, "netproxy_http_requests_total", method="OTHER", status="200"), 2)

    def test_cache_miss_then_hit(self):
        """A miss then a hit count one MISS and one HIT; entries and stored bytes show what was stored."""
        before = self.scrape()
        self.assertEqual((self.value(before, "netproxy_cache_entries"),
                          self.value(before, "netproxy_cache_stored_bytes"),
                          self.value(before, "netproxy_cache_requests_total", result="HIT")), (0, 0, 0))
        self.fetch(answer=FRESH)
        self.assertEqual(self.value(self.scrape(), "netproxy_cache_requests_total", result="MISS"), 1)
        self.fetch()
        after = self.scrape()
        self.assertEqual({result: self.value(after, "netproxy_cache_requests_total", result=result)
                          for result in ("HIT", "MISS", "REVALIDATED", "STALE")},
                         {"HIT": 1, "MISS": 1, "REVALIDATED": 0, "STALE": 0})
        self.assertEqual(self.value(after, "netproxy_cache_entries"), 1)
        self.assertGreater(self.store.size, len(b"fresh"))
        self.assertEqual(self.value(after, "netproxy_cache_stored_bytes"), self.store.size)
        self.assertEqual(self.upstream_requests(), 1)

    def test_revalidated(self):
        """A stale entry the origin confirms with 304 counts as REVALIDATED."""
        self.fetch(answer=b'HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nETag: "v1"\r\nContent-Length: 3\r\n\r\nold')
        self.fetch(answer=b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\nCache-Control: max-age=60\r\n\r\n')
        self.assertEqual(self.cache_results(), ["MISS", "REVALIDATED"])
        self.assertEqual(self.value(self.scrape(), "netproxy_cache_requests_total", result="REVALIDATED"), 1)

    def test_bypass(self):
        """A request the cache does not handle (a POST), and each page request, count as BYPASS."""
        self.fetch(get(method=b"POST", headers=b"Content-Length: 0\r\n"), answer=OK)
        self.assertEqual(self.value(self.scrape(), "netproxy_cache_requests_total", result="BYPASS"), 1)
        self.assertEqual(self.value(self.scrape(), "netproxy_cache_requests_total", result="BYPASS"), 2)

    def test_bytes(self):
        """Bytes read from clients and body bytes sent to them are counted, from the origin and from the cache."""
        before, page = self.scrape_page()
        request = get(b"/x")
        self.fetch(request, answer=FRESH)
        self.fetch(request)
        after = self.scrape()
        # A scrape's request is read before its page is made, and its page
        # counted once sent: "after" holds its own request, and the page
        # sent for "before".
        self.assertEqual(self.value(after, "netproxy_http_received_bytes_total")
                         - self.value(before, "netproxy_http_received_bytes_total"), 2 * len(request) + len(METRICS))
        self.assertEqual(self.value(after, "netproxy_http_sent_bytes_total")
                         - self.value(before, "netproxy_http_sent_bytes_total"), 2 * len(b"fresh") + len(page))

    def test_evictions(self):
        """Entries evicted to keep within the cache size are counted, as the store counts them."""
        self.store.max_size = 1000
        body = b"x" * 300
        for index in range(5):
            self.fetch(get(b"/%d" % (index,)), answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
                                                       b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        self.assertGreater(self.store.evictions, 0)
        scraped = self.scrape()
        self.assertEqual(self.value(scraped, "netproxy_cache_evictions_total"), self.store.evictions)
        self.assertEqual(self.value(scraped, "netproxy_cache_entries"), 5 - self.store.evictions)
        self.assertLessEqual(self.value(scraped, "netproxy_cache_stored_bytes"), 1000)

    def test_collapsed(self):
        """Two concurrent misses for one URL: one goes upstream, the other is counted as collapsed (and a HIT)."""
        self.assertEqual(self.factory.metrics.collapsed.value(), 0)
        first = self.ask(get())
        second = self.ask(get())
        self.answer(self.upstream(), FRESH)
        for _ in range(50):
            self.reactor.advance(0)
        self.assertEqual([split_response(t.value())[2] for t in (first, second)], [b"fresh", b"fresh"])
        scraped = self.scrape()
        self.assertEqual(self.value(scraped, "netproxy_cache_collapsed_total"), 1)
        self.assertEqual((self.value(scraped, "netproxy_cache_requests_total", result="MISS"),
                          self.value(scraped, "netproxy_cache_requests_total", result="HIT")), (1, 1))
        self.assertEqual(self.upstream_requests(), 1)

    def test_upstream_latency(self):
        """Connect and response times are observed by the reactor's clock; a pooled connection is not timed again."""
        self.send(get())
        self.reactor.advance(0.02)
        origin = self.origin()
        self.reactor.advance(0.3)
        self.answer(origin, OK)
        self.send(get(b"/2"))
        self.reactor.advance(4)
        self.answer(origin, OK)
        scraped = self.scrape()
        connect, response = "netproxy_http_upstream_connect_seconds", "netproxy_http_upstream_response_seconds"
        self.assertEqual((self.value(scraped, connect + "_count"), self.value(scraped, response + "_count")), (1, 2))
        self.assertAlmostEqual(self.value(scraped, connect + "_sum"), 0.02)
        self.assertAlmostEqual(self.value(scraped, response + "_sum"), 4.3)
        self.assertEqual([self.value(scraped, connect + "_bucket", le=le) for le in ("0.01", "0.025", "+Inf")],
                         [0, 1, 1])
        self.assertEqual([self.value(scraped, response + "_bucket", le=le) for le in ("0.25", "0.5", "2.5", "5")],
                         [0, 1, 1, 2])

    def test_failed_connect_not_timed(self):
        """A connection that fails is not a connect time."""
        self.send(get())
        fail_connection(self.reactor, ConnectionRefusedError())
        scraped = self.scrape()
        self.assertEqual(self.value(scraped, "netproxy_http_requests_total", method="GET", status="502"), 1)
        self.assertEqual(scraped.get(("netproxy_http_upstream_connect_seconds_count", ()), 0), 0)

    def test_connection_gauges(self):
        """Open client connections, open upstream connections and idle pooled ones are shown as they are now."""
        client = "netproxy_http_client_connections"
        upstream, idle = "netproxy_http_upstream_connections", "netproxy_http_upstream_idle_connections"
        # setUp's client, and the scraping one.
        self.assertEqual(self.value(self.scrape(), client), 2)
        other = self.ask(get())
        self.assertEqual(self.value(self.scrape(), client), 3)
        origin = self.origin()
        scraped = self.scrape()
        self.assertEqual((self.value(scraped, upstream), self.value(scraped, idle)), (1, 0))
        self.answer(origin, OK)
        scraped = self.scrape()
        self.assertEqual((self.value(scraped, upstream), self.value(scraped, idle)), (1, 1))
        other.loseConnection()
        origin.loseConnection()
        scraped = self.scrape()
        self.assertEqual((self.value(scraped, client), self.value(scraped, upstream), self.value(scraped, idle)),
                         (2, 0, 0))

    def test_start_time(self):
        """The start time is the daemon's, in seconds since the epoch."""
        self.assertEqual(self.value(self.scrape(), "netproxy_start_time_seconds"), self.factory.metrics.started)
        self.assertGreater(self.factory.metrics.started, 1.6e9)


class UnixClientTests(AdminTestCase):
    """
    Unix-socket clients are of the default --admin networks, as loopback is.
    """

    def test_unix_admin_by_default(self):
        """A Unix-socket client admitted by --allow gets /metrics with --admin left to its default."""
        factory = ProxyFactory(self.reactor, allow=RuleSet([parse_rule("unix")]), rules=RuleSet(),
                               connect_ports={443}, timeout=30, connect_timeout=10, cache=Cache(self.store))
        transport = self.ask(peer=UNIXAddress(None), factory=factory)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 OK\r\n"), transport.value())

    def test_unix_not_admin_when_left_out(self):
        """An --admin list without unix refuses a Unix-socket client, naming it unix."""
        factory = ProxyFactory(self.reactor, allow=RuleSet([parse_rule("unix")]), rules=RuleSet(),
                               connect_ports={443}, timeout=30, connect_timeout=10, cache=Cache(self.store),
                               admin=RuleSet([parse_rule("127.0.0.0/8")]))
        self.assertError(403, "not from unix", self.ask(peer=UNIXAddress(None), factory=factory))
