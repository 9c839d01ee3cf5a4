"""
Tests for L{netproxy.http.caching}, the cache's side of an exchange:
responses stored as they stream past, hits served with C{Age} and
C{Cache-Status}, stale entries revalidated, stale-if-error, invalidation,
collapsed forwarding, and the access log's cache status, with an in-memory
store on a L{MemoryReactorClock}.
"""

import sqlite3

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.python.filepath import FilePath

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.cache.sqlite_index import Index
from netproxy.http.cache.sqlite_store import SQLiteStore
from netproxy.http.cache.producers import next_turn
from netproxy.http.cache.responses import Cache, cache_key
from netproxy.http.message import parse_target
from netproxy.testing import connect, fail_connection
from tests.http_helpers import CLIENT, FRESH, STALE_WITH_ETAG, URL, CacheTestCase, get, split_response

class HitTests(CacheTestCase):
    """
    A fresh stored response answers without the origin.
    """

    def test_miss_then_hit(self):
        """The first request goes upstream and is stored; the second is served from the cache."""
        first = self.fetch(answer=FRESH)
        self.assertEqual(self.field(first, b"Cache-Status"), b"netproxy; fwd=uri-miss; fwd-status=200; stored")
        second = self.fetch()
        self.assertEqual(self.upstream_requests(), 1)
        status, _, body = split_response(second.value())
        self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"fresh"))
        self.assertEqual(self.field(second, b"Cache-Status"), b"netproxy; hit; ttl=60")
        self.assertEqual(self.field(second, b"ETag"), b'"v1"')
        self.assertEqual(self.cache_results(), ["MISS", "HIT"])

    def test_age(self):
        """A hit carries the time it has spent in the cache as Age, and less TTL."""
        self.fetch(answer=FRESH)
        self.reactor.advance(10)
        hit = self.fetch()
        self.assertEqual(self.field(hit, b"Age"), b"10")
        self.assertEqual(self.field(hit, b"Cache-Status"), b"netproxy; hit; ttl=50")

    def test_head_from_get(self):
        """A HEAD is answered from a stored GET response, with its length and no body."""
        self.fetch(answer=FRESH)
        head = self.fetch(get(method=b"HEAD"))
        self.assertEqual(self.upstream_requests(), 1)
        self.assertEqual(self.field(head, b"Content-Length"), b"5")
        self.assertEqual(split_response(head.value())[2], b"")

    def test_client_precondition(self):
        """A client's If-None-Match matching the stored ETag gets 304 from the cache."""
        self.fetch(answer=FRESH)
        answer = self.fetch(get(headers=b'If-None-Match: "v1"\r\n'))
        self.assertEqual(self.upstream_requests(), 1)
        status, _, body = split_response(answer.value())
        self.assertEqual((status, body), (b"HTTP/1.1 304 Not Modified", b""))

    def test_keep_alive_after_hit(self):
        """A pipelined request after a hit is read and answered on the same connection."""
        self.fetch(answer=FRESH)
        transport = self.fetch(get() + get(b"/other"))
        self.answer(self.upstream(), b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        self.assertTrue(transport.value().endswith(b"\r\n\r\nhi"))
        self.assertTrue(transport.connected)

    def test_request_no_cache(self):
        """A client's no-cache sends the request upstream, even with a fresh entry."""
        self.fetch(answer=FRESH)
        self.fetch(get(headers=b"Cache-Control: no-cache\r\n"), answer=FRESH)
        self.assertEqual(self.upstream_requests(), 2)
        self.assertEqual(self.cache_results(), ["MISS", "MISS"])

    def test_only_if_cached(self):
        """only-if-cached with nothing stored is 504, and nothing goes upstream."""
        answer = self.fetch(get(headers=b"Cache-Control: only-if-cached\r\n"))
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 504 "))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_only_if_cached_stale(self):
        """only-if-cached with only a stale entry stored is 504, without a revalidation."""
        self.fetch(answer=STALE_WITH_ETAG)
        self.reactor.advance(1)
        answer = self.fetch(get(headers=b"Cache-Control: only-if-cached\r\n"))
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 504 "))
        self.assertEqual(self.upstream_requests(), 1)

    def test_max_stale(self):
        """A client accepting stale responses with max-stale gets the stale entry without the origin."""
        self.fetch(answer=STALE_WITH_ETAG)
        self.reactor.advance(5)
        answer = self.fetch(get(headers=b"Cache-Control: max-stale=60\r\n"))
        self.assertEqual(split_response(answer.value())[2], b"old")
        self.assertEqual(self.upstream_requests(), 1)
        self.assertEqual(self.cache_results(), ["MISS", "HIT"])

    def test_large_body_streamed(self):
        """A stored body larger than one chunk is streamed whole, over several reactor turns."""
        body = bytes(range(256)) * 1024
        self.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: %d\r\n\r\n%s"
                   % (len(body), body))
        hit = self.fetch()
        self.assertEqual(split_response(hit.value())[2], body)
        self.assertEqual(self.cache_results(), ["MISS", "HIT"])


class NamedCacheTests(CacheTestCase):
    """
    A proxy with a pseudonym of its own (a member of a cache hierarchy)
    names itself in the Via and Cache-Status of what its cache serves.
    """

    def setUp(self):
        super().setUp()
        self.factory.pseudonym = b"netproxy-1a2b3c4d"
        self.factory.cache = Cache(self.store, pseudonym=self.factory.pseudonym)

    def test_hit_named(self):
        """A miss and then a hit both say netproxy-1a2b3c4d, after the Via and Cache-Status of the hop before."""
        answer = FRESH.replace(b"\r\n\r\n", b"\r\nVia: 1.1 netproxy-parent\r\n"
                                              b"Cache-Status: netproxy-parent; hit; ttl=60\r\n\r\n", 1)
        first = self.fetch(answer=answer)
        second = self.fetch()
        self.assertEqual(self.upstream_requests(), 1)
        for transport, ours in ((first, b"netproxy-1a2b3c4d; fwd=uri-miss; fwd-status=200; stored"),
                                (second, b"netproxy-1a2b3c4d; hit; ttl=60")):
            fields = split_response(transport.value())[1]
            self.assertEqual([value for name, value in fields if name.lower() == b"via"],
                             [b"1.1 netproxy-parent", b"1.1 netproxy-1a2b3c4d"])
            self.assertEqual([value for name, value in fields if name.lower() == b"cache-status"],
                             [b"netproxy-parent; hit; ttl=60", ours])

    def test_collapsed_named(self):
        """A request answered with the response another is storing says the proxy's name too."""
        _, first = connect(self.factory, CLIENT)
        first.protocol.dataReceived(get())
        _, second = connect(self.factory, CLIENT)
        second.protocol.dataReceived(get())
        self.answer(self.upstream(), FRESH)
        for _ in range(50):
            self.reactor.advance(0)
        self.assertEqual(self.field(second, b"Cache-Status"), b"netproxy-1a2b3c4d; hit; fwd=uri-miss; collapsed")
        self.assertEqual(self.field(second, b"Via"), b"1.1 netproxy-1a2b3c4d")


class StoreTests(CacheTestCase):
    """
    Only complete, storable responses are stored.
    """

    def test_cut_short_not_stored(self):
        """A response cut short by its origin is not stored."""
        transport = self.fetch()
        origin = self.upstream()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\nhalf")
        origin.loseConnection()
        self.assertTrue(transport.disconnected)
        self.assertEqual(len(self.store), 0)

    def test_private_not_stored(self):
        """A private response is not stored, and says so in Cache-Status."""
        answer = self.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: private, max-age=60\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(len(self.store), 0)
        self.assertEqual(self.field(answer, b"Cache-Status"), b"netproxy; fwd=uri-miss; fwd-status=200")

    def test_too_large_not_announced(self):
        """A body longer than the store holds is not stored, and Cache-Status does not say stored."""
        self.store.max_size = 100
        answer = self.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 101\r\n\r\n"
                            + b"x" * 101)
        self.assertEqual(self.field(answer, b"Cache-Status"), b"netproxy; fwd=uri-miss; fwd-status=200")
        self.assertEqual(len(self.store), 0)

    def test_refused_not_announced(self):
        """A store that cannot begin to write the entry (a read-only directory) is not announced as stored."""
        writer = self.store.writer

        def refused(key, meta):
            started = writer(key, meta)
            started.abort()
            return started

        self.patch(self.store, "writer", refused)
        answer = self.fetch(answer=FRESH)
        self.assertEqual(self.field(answer, b"Cache-Status"), b"netproxy; fwd=uri-miss; fwd-status=200")
        self.assertEqual(split_response(answer.value())[2], b"fresh")
        self.assertEqual(len(self.store), 0)

    def test_bypass_status(self):
        """A request the cache does not handle says so in Cache-Status."""
        answer = self.fetch(get(method=b"POST", headers=b"Content-Length: 0\r\n"),
                            answer=b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(self.field(answer, b"Cache-Status"), b"netproxy; fwd=bypass; fwd-status=201")
        self.assertEqual(self.cache_results(), ["BYPASS"])

    def test_post_invalidates(self):
        """A successful POST to a stored URL removes its entry."""
        self.fetch(answer=FRESH)
        self.fetch(get(method=b"POST", headers=b"Content-Length: 0\r\n"),
                   answer=b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertIsNone(self.store.get(cache_key(parse_target(b"GET", URL + b"/"))))

    def test_vary(self):
        """Two variants of one URL are stored side by side, each served to its own requests."""
        for language in (b"en", b"fr"):
            self.fetch(get(headers=b"Accept-Language: %s\r\n" % language),
                       answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: Accept-Language\r\n"
                              b"Content-Length: 2\r\n\r\n%s" % language)
        for language in (b"fr", b"en"):
            hit = self.fetch(get(headers=b"Accept-Language: %s\r\n" % language))
            self.assertEqual(split_response(hit.value())[2], language)
        self.assertEqual(self.upstream_requests(), 2)
        self.assertEqual(self.cache_results(), ["MISS", "MISS", "HIT", "HIT"])


class VaryInvalidationTests(CacheTestCase):
    """
    Invalidating a URL whose response varies forgets every variant.
    """

    def store_variant(self, language, body):
        self.fetch(get(headers=b"Accept-Language: %s\r\n" % language),
                   answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: Accept-Language\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    def test_all_variants_forgotten(self):
        """After a POST, a variant stored before it is not served, even once another is stored again."""
        self.store_variant(b"en", b"old en")
        self.store_variant(b"fr", b"old fr")
        self.fetch(get(method=b"POST", headers=b"Content-Length: 0\r\n"),
                   answer=b"HTTP/1.1 204 No Content\r\n\r\n")
        self.store_variant(b"en", b"new en")
        self.fetch(get(headers=b"Accept-Language: fr\r\n"), answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\n"
                   b"Vary: Accept-Language\r\nContent-Length: 6\r\n\r\nnew fr")
        self.assertEqual(self.cache_results()[-1], "MISS")


class RevalidationTests(CacheTestCase):
    """
    A stale entry with a validator is revalidated with a conditional request.
    """

    def test_not_modified(self):
        """A 304 from the origin is answered with the stored body, and refreshes the stored fields."""
        self.fetch(answer=STALE_WITH_ETAG)
        transport = self.fetch()
        origin = self.upstream()
        self.assertIn(b'\r\nIf-None-Match: "v1"\r\n', origin.value())
        self.answer(origin, b"HTTP/1.1 304 Not Modified\r\nX-Fresh: yes\r\nContent-Length: 99\r\n\r\n")
        for _ in range(5):
            self.reactor.advance(0)
        status, _, body = split_response(transport.value())
        self.assertEqual((status, body), (b"HTTP/1.1 200 OK", b"old"))
        self.assertEqual(self.field(transport, b"X-Fresh"), b"yes")
        self.assertEqual(self.field(transport, b"Content-Length"), b"3")
        self.assertEqual(self.cache_results(), ["MISS", "REVALIDATED"])
        self.assertEqual(len(self.factory.pool), 1)

    def test_pipelined_after_revalidation(self):
        """A request pipelined behind one being revalidated is answered next."""
        self.fetch(answer=STALE_WITH_ETAG)
        transport = self.fetch()
        origin = self.upstream()
        transport.protocol.dataReceived(get(b"/next"))
        self.answer(origin, b"HTTP/1.1 304 Not Modified\r\n\r\n")
        self.reactor.advance(0)
        self.assertIn(b"GET /next HTTP/1.1", origin.value())
        self.answer(origin, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nnext")
        self.assertTrue(transport.value().endswith(b"\r\n\r\nnext"))

    def test_client_precondition_replaced(self):
        """The client's own If-None-Match is replaced by the cache's validator, then answered from the entry."""
        self.fetch(answer=STALE_WITH_ETAG)
        transport = self.fetch(get(headers=b'If-None-Match: "other"\r\n'))
        origin = self.upstream()
        self.assertNotIn(b'"other"', origin.value())
        self.answer(origin, b"HTTP/1.1 304 Not Modified\r\n\r\n")
        self.reactor.advance(0)
        self.assertEqual(split_response(transport.value())[2], b"old")

    def test_modified(self):
        """A full response to the revalidation replaces the stored one."""
        self.fetch(answer=STALE_WITH_ETAG)
        self.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 3\r\n\r\nnew")
        hit = self.fetch()
        self.assertEqual(split_response(hit.value())[2], b"new")
        self.assertEqual(self.cache_results(), ["MISS", "MISS", "HIT"])


class StaleIfErrorTests(CacheTestCase):
    """
    stale-if-error serves the stored response when the origin fails.
    """

    STORED = (b"HTTP/1.1 200 OK\r\nCache-Control: max-age=0, stale-if-error=600\r\nContent-Length: 5\r\n\r\n"
              b"saved")

    def test_origin_down(self):
        """An origin that refuses the connection gets the stale entry served, logged STALE."""
        self.fetch(answer=self.STORED)
        self.upstream().loseConnection()
        transport = self.fetch()
        fail_connection(self.reactor, ConnectionRefusedError())
        self.reactor.advance(0)
        self.assertEqual(split_response(transport.value())[2], b"saved")
        self.assertIn(b"stale-if-error", self.field(transport, b"Cache-Status"))
        self.assertEqual(self.cache_results(), ["MISS", "STALE"])

    def test_server_error(self):
        """An origin answering 503 gets the stale entry served instead of the error."""
        self.fetch(answer=self.STORED)
        transport = self.fetch(answer=b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\ndown")
        self.assertEqual(split_response(transport.value())[0:3:2], (b"HTTP/1.1 200 OK", b"saved"))

    def test_not_allowed(self):
        """Without stale-if-error, an origin that refuses is a 502 as usual."""
        self.fetch(answer=STALE_WITH_ETAG)
        self.upstream().loseConnection()
        transport = self.fetch()
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 502 "))


class PurgeTests(CacheTestCase):
    """
    PURGE from an --admin network removes a stored response.
    """

    def test_purged(self):
        """PURGE of a stored URL is 200, keeps the connection, and the next GET is a miss."""
        self.fetch(answer=FRESH)
        answer = self.fetch(get(method=b"PURGE"))
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 200 OK\r\n"), answer.value())
        self.assertTrue(answer.connected)
        self.fetch(answer=FRESH)
        self.assertEqual(self.cache_results(), ["MISS", "BYPASS", "MISS"])
        self.assertEqual(self.upstream_requests(), 2)

    def test_not_stored(self):
        """PURGE of a URL the cache does not hold is 404, and nothing goes upstream."""
        answer = self.fetch(get(method=b"PURGE"))
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 404 "))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_not_admin(self):
        """A client outside --admin gets 403, and the entry stays."""
        self.factory.admin = RuleSet([parse_rule("10.0.0.0/8")])
        self.fetch(answer=FRESH)
        answer = self.fetch(get(method=b"PURGE"))
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 403 "))
        self.assertIn(b"--admin", answer.value())
        self.assertIsNotNone(self.store.get(cache_key(parse_target(b"GET", URL + b"/"))))

    def test_variants(self):
        """PURGE of a URL whose response varies forgets all its variants."""
        self.fetch(get(headers=b"Accept-Language: en\r\n"),
                   answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: Accept-Language\r\n"
                          b"Content-Length: 2\r\n\r\nen")
        self.assertTrue(self.fetch(get(method=b"PURGE")).value().startswith(b"HTTP/1.1 200 "))
        self.fetch(get(headers=b"Accept-Language: en\r\n"), answer=FRESH)
        self.assertEqual(self.cache_results()[-1], "MISS")


class CollapsedForwardingTests(CacheTestCase):
    """
    Concurrent misses for one URL make one upstream request; the response
    is handed to the requests that waited only when they may share it.
    """

    def send(self, request=None):
        """
        Send C{request} (a GET by default) on a new client connection,
        without answering it.

        :returns: the client's transport.
        """
        _, transport = connect(self.factory, CLIENT)
        transport.protocol.dataReceived(request or get())
        return transport

    def turns(self, count=50):
        for _ in range(count):
            self.reactor.advance(0)

    def test_one_upstream_request(self):
        """
        A request arriving while the same miss is fetched waits for it, and
        is answered with the response being stored, collapsed.
        """
        first, second = self.send(), self.send()
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.answer(self.upstream(), FRESH)
        self.turns()
        self.assertEqual(self.upstream_requests(), 1)
        for transport in (first, second):
            self.assertEqual(split_response(transport.value())[2], b"fresh")
        self.assertEqual(self.field(second, b"Cache-Status"), b"netproxy; hit; fwd=uri-miss; collapsed")
        self.assertEqual(self.field(second, b"Content-Length"), b"5")
        self.assertEqual(self.field(second, b"ETag"), b'"v1"')
        self.assertEqual(sorted(self.cache_results()), ["HIT", "MISS"])
        self.assertTrue(second.connected)

    def test_many_waiters(self):
        """
        Fifty requests for one miss make one upstream request, and each
        gets the whole body.
        """
        transports = [self.send() for _ in range(50)]
        self.answer(self.upstream(), FRESH)
        self.turns()
        self.assertEqual(self.upstream_requests(), 1)
        self.assertEqual([split_response(t.value())[2] for t in transports], [b"fresh"] * 50)

    def test_streamed_to_waiters(self):
        """
        The waiters get the body as it arrives, not once it is complete.
        """
        self.send()
        second = self.send()
        origin = self.upstream()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\nfirst")
        self.turns()
        self.assertEqual(split_response(second.value())[2], b"first")
        self.answer(origin, b"-half")
        self.turns()
        self.assertEqual(split_response(second.value())[2], b"first-half")
        self.assertEqual(self.cache_results(), ["MISS", "HIT"])

    def test_joins_during_body(self):
        """
        A request arriving while the body is being stored follows it: it gets
        what arrived so far, then the rest, without an upstream request.
        """
        first = self.send()
        origin = self.upstream()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\nfirst")
        self.turns()
        late = self.send()
        self.turns()
        self.assertEqual(split_response(late.value())[2], b"first")
        self.answer(origin, b"-half")
        self.turns()
        self.assertEqual(split_response(late.value())[2], b"first-half")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.assertEqual(self.field(late, b"Cache-Status"), b"netproxy; hit; fwd=uri-miss; collapsed")
        self.assertEqual(split_response(first.value())[2], b"first-half")

    def test_joins_not_after_abandoned(self):
        """
        Once the response being stored is abandoned, a new request goes
        upstream itself.
        """
        first = self.send()
        origin = self.upstream()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\nfirst")
        first.loseConnection()
        late = self.send()
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual(late.value(), b"")

    def assertAlone(self, answer, request=None):
        """
        Two requests (the second C{request}) wait for one miss, answered
        C{answer}: the second is not handed it, and goes upstream itself.
        """
        first, second = self.send(), self.send(request)
        self.answer(self.upstream(), answer)
        self.turns()
        self.assertEqual(second.value(), b"")
        self.answer(self.upstream(), b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")
        self.turns()
        self.assertEqual(split_response(second.value())[2], b"mine")
        self.assertEqual(self.upstream_requests(), 2)

    def test_private(self):
        """
        A private response is handed to no waiter.
        """
        self.assertAlone(b"HTTP/1.1 200 OK\r\nCache-Control: private, max-age=60\r\nContent-Length: 6\r\n\r\nsecret")

    def test_set_cookie(self):
        """
        A response with Set-Cookie is handed to no waiter, even stored.
        """
        self.assertAlone(b"HTTP/1.1 200 OK\r\nCache-Control: public, max-age=60\r\nSet-Cookie: id=1\r\n"
                         b"Content-Length: 6\r\n\r\nsecret")

    def test_vary_mismatch(self):
        """
        A waiter whose Vary fields differ is not handed the response.
        """
        self.assertAlone(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nVary: Accept-Language\r\n"
                         b"Content-Length: 2\r\n\r\nen", get(headers=b"Accept-Language: fr\r\n"))

    def test_unknown_length(self):
        """
        A chunked response, whose length is not known at its head, is not
        handed to the waiters.
        """
        self.assertAlone(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"2\r\nhi\r\n0\r\n\r\n")

    def test_too_large(self):
        """
        A response too large for the store is not handed to the waiters,
        who would be cut short when the store gives it up.
        """
        self.assertAlone(b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: %d\r\n\r\n"
                         % (self.store.max_size + 1,))

    def test_leader_fails(self):
        """
        When the leading request cannot reach the origin, the waiters try
        on their own.
        """
        first, second = self.send(), self.send()
        fail_connection(self.reactor, ConnectionRefusedError())
        self.assertTrue(first.value().startswith(b"HTTP/1.1 502 "))
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.answer(self.upstream(), FRESH)
        self.turns()
        self.assertEqual(split_response(second.value())[2], b"fresh")

    def test_waiter_leaves(self):
        """
        A waiter whose client goes away is forgotten: the others are still
        answered.
        """
        first, second, third = self.send(), self.send(), self.send()
        second.loseConnection()
        self.answer(self.upstream(), FRESH)
        self.turns()
        self.assertEqual(split_response(third.value())[2], b"fresh")
        self.assertEqual(second.value(), b"")
        self.assertEqual(self.upstream_requests(), 1)

    def test_leader_cut_short(self):
        """
        A response cut short is not stored: a waiter already following it
        has its connection cut too, since its response cannot be completed.
        """
        first, second = self.send(), self.send()
        origin = self.upstream()
        self.answer(origin, b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nContent-Length: 10\r\n\r\nhalf")
        self.turns()
        origin.loseConnection()
        self.turns()
        self.assertTrue(second.disconnected)
        self.assertEqual(len(self.store), 0)

    def test_not_collapsed(self):
        """
        Conditional requests, and requests asking for the origin, do not
        wait: each goes upstream.
        """
        self.send()
        self.send(get(headers=b'If-None-Match: "v0"\r\n'))
        self.send(get(headers=b"Cache-Control: no-cache\r\n"))
        self.send(get(headers=b"Cache-Control: max-age=0\r\n"))
        self.assertEqual(len(self.reactor.tcpClients), 4)


class ReadOnlyCacheTests(CacheTestCase):
    """
    A cache on disk whose index cannot be changed: PURGE says 200 only when
    the entry is gone for good, and an entry that could not be removed
    (by PURGE or an unsafe method) is never served again.  Changing the
    index fails by an injected error, since chmod does not stop root.
    """

    def setUp(self):
        super().setUp()
        self.directory = FilePath(self.mktemp())
        self.store = SQLiteStore(self.directory, 10 * 1024 * 1024, self.reactor, scheduler=next_turn(self.reactor))
        self.addCleanup(self.store.close)
        self.factory.cache = Cache(self.store)
        self.fetch(answer=FRESH)
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def refuse(self):
        """Removing from the index fails, as in a read-only directory."""
        def no_remove(index, name, id=None):
            raise sqlite3.OperationalError("attempt to write a readonly database")

        self.patch(Index, "remove", no_remove)

    def errors(self):
        return [event for event in self.logged if event["log_level"] >= LogLevel.error]

    def test_purge_not_removed(self):
        """PURGE of an entry that cannot be removed is 500 naming why, logged as an error; it is not served again."""
        self.refuse()
        answer = self.fetch(get(method=b"PURGE"))
        self.assertError(500, "http://127.0.0.1:8000/ could not be removed from the cache: the cache index ", answer)
        self.assertIn(b"readonly database", answer.value())
        self.assertEqual([event.get("status") for event in self.errors()], [500])
        self.fetch(answer=FRESH)
        self.assertEqual(self.cache_results(), ["MISS", "BYPASS", "MISS"])

    def test_purge_committed(self):
        """PURGE is 200 once the removal is committed: a store opened afresh on the directory finds nothing."""
        answer = self.fetch(get(method=b"PURGE"))
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 200 OK\r\n"), answer.value())
        restarted = SQLiteStore(self.directory, 10 * 1024 * 1024, self.reactor)
        self.addCleanup(restarted.close)
        self.assertIsNone(restarted.get(cache_key(parse_target(b"GET", URL + b"/"))))

    def test_invalidation_not_removed(self):
        """An unsafe method's invalidation that cannot remove the entry logs an error; the entry is not served again."""
        self.refuse()
        answer = self.fetch(get(method=b"POST", headers=b"Content-Length: 0\r\n"),
                            answer=b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertTrue(answer.value().startswith(b"HTTP/1.1 204 "))
        [error] = self.errors()
        self.assertEqual(error["log_format"], "could not invalidate {url} in the cache: {error}")
        self.fetch(answer=FRESH)
        self.assertEqual(self.cache_results(), ["MISS", "BYPASS", "MISS"])


RANGE_BODY = bytes(range(256)) * 16


def whole(body=RANGE_BODY, extra=b"Cache-Control: max-age=60\r\n"):
    """
    :returns: an origin's complete 200 with C{body} and C{extra} fields.
    """
    return b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s" % (extra, len(body), body)


class RangeMissTests(CacheTestCase):
    """
    A range request that misses fetches the whole response (and the client gets its range cut from it), or goes
    upstream untouched, as the range offset limit says.
    """

    def ranged(self, value, answer=None, extra=b""):
        """
        :returns: the client transport of a GET with C{Range: value}, the origin answering C{answer}.
        """
        return self.fetch(get(headers=b"Range: " + value + b"\r\n" + extra), answer=answer)

    def sent_upstream(self):
        """:returns: the head of the last request the origin received."""
        return self.upstream().value().split(b"\r\n\r\n")[-2]

    def test_fetched_whole(self):
        """A range starting within the limit goes up without Range; the client gets its 206; the 200 is stored."""
        transport = self.ranged(b"bytes=10-19", answer=whole())
        self.assertNotIn(b"range:", self.sent_upstream().lower())
        status, _, body = split_response(transport.value())
        self.assertEqual((status, body), (b"HTTP/1.1 206 Partial Content", RANGE_BODY[10:20]))
        self.assertEqual(self.field(transport, b"Content-Range"), b"bytes 10-19/4096")
        self.assertEqual(self.field(transport, b"Content-Length"), b"10")
        self.assertEqual(self.field(transport, b"Cache-Status"), b"netproxy; fwd=uri-miss; fwd-status=200; stored")
        self.assertTrue(transport.connected)
        self.assertEqual(split_response(self.fetch().value())[2], RANGE_BODY)
        self.assertEqual(split_response(self.ranged(b"bytes=-6").value())[2], RANGE_BODY[-6:])
        self.assertEqual(self.upstream_requests(), 1)
        self.assertEqual(self.cache_results(), ["MISS", "HIT", "HIT"])
        self.assertEqual([event["status"] for event in self.events], [206, 200, 206])

    def test_if_range_fails_on_new_response(self):
        """An If-Range the fetched response does not match gets the full 200, which is stored."""
        transport = self.ranged(b"bytes=0-9", answer=whole(extra=b'Cache-Control: max-age=60\r\nETag: "new"\r\n'),
                                extra=b'If-Range: "old"\r\n')
        self.assertNotIn(b"if-range", self.sent_upstream().lower())
        self.assertEqual(split_response(transport.value())[:3:2], (b"HTTP/1.1 200 OK", RANGE_BODY))

    def test_beyond_limit_forwarded(self):
        """A range starting past the limit, a suffix range, several ranges, or limit 0: Range goes up untouched."""
        self.factory.cache.range_offset_limit = 100
        partial = b"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 200-209/4096\r\nContent-Length: 10\r\n\r\n"
        for value in (b"bytes=200-209", b"bytes=-10", b"bytes=0-1,5-6"):
            transport = self.ranged(value, answer=partial + RANGE_BODY[200:210])
            self.assertIn(b"\r\nRange: " + value, self.sent_upstream(), value)
            self.assertEqual(split_response(transport.value())[0], b"HTTP/1.1 206 Partial Content")
        self.factory.cache.range_offset_limit = 0
        self.ranged(b"bytes=0-9", answer=partial + RANGE_BODY[200:210])
        self.assertIn(b"\r\nRange: bytes=0-9", self.sent_upstream())
        self.assertEqual(len(self.store), 0)

    def test_no_limit(self):
        """Without a limit, even a suffix range is fetched whole."""
        self.factory.cache.range_offset_limit = None
        transport = self.ranged(b"bytes=-6", answer=whole())
        self.assertNotIn(b"range:", self.sent_upstream().lower())
        self.assertEqual(split_response(transport.value())[2], RANGE_BODY[-6:])
        self.assertEqual(len(self.store), 1)

    def test_large_response_abandoned(self):
        """A response longer than the limit is not stored: once the range is sent, the origin's connection closes."""
        self.factory.cache.range_offset_limit = 1000
        transport = self.ranged(b"bytes=0-99")
        origin = self.upstream()
        self.answer(origin, whole()[:-3000])
        for _ in range(5):
            self.reactor.advance(0)
        self.assertEqual(split_response(transport.value())[2], RANGE_BODY[:100])
        self.assertFalse(origin.connected)
        self.assertTrue(transport.connected)
        self.assertEqual((len(self.store), self.cache_results()), (0, ["MISS"]))

    def test_large_response_to_end_stored(self):
        """A response longer than the limit is stored when the range runs to its end: all of it is fetched anyway."""
        self.factory.cache.range_offset_limit = 1000
        transport = self.ranged(b"bytes=500-", answer=whole())
        self.assertEqual(split_response(transport.value())[2], RANGE_BODY[500:])
        self.assertEqual(len(self.store), 1)

    def test_unknown_length(self):
        """A chunked 200 is relayed whole: the range cannot be framed before its end."""
        chunked = (b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"5\r\nhello\r\n0\r\n\r\n")
        transport = self.ranged(b"bytes=1-2", answer=chunked)
        self.assertEqual(split_response(transport.value())[:3:2], (b"HTTP/1.1 200 OK", b"5\r\nhello\r\n0\r\n\r\n"))

    def test_unsatisfiable_miss(self):
        """A range past the end of the fetched response gets it whole (the RFC lets Range be ignored)."""
        transport = self.ranged(b"bytes=9000-", answer=whole())
        self.assertEqual(split_response(transport.value())[:3:2], (b"HTTP/1.1 200 OK", RANGE_BODY))

    def test_not_collapsed(self):
        """A range request neither leads nor waits for a miss another request fetches."""
        first = self.fetch(get())
        second = self.ranged(b"bytes=0-9")
        self.assertEqual(len(self.reactor.tcpClients), 2)
        self.assertEqual((first.value(), second.value()), (b"", b""))


class HeadFreshensTests(CacheTestCase):
    """
    A 200 to HEAD freshens the stored GET response it matches (RFC 9111 section 4.3.5).
    """

    stale = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nX-Version: 1\r\nContent-Length: 3\r\n\r\nold"

    def test_freshened(self):
        """Its fields replace the stored ones, the HEAD is answered with them all, and the next GET is a hit."""
        self.fetch(answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=0\r\nX-Version: 1\r\nX-Kept: yes\r\n"
                          b"Content-Length: 3\r\n\r\nold")
        self.reactor.advance(1)
        head = self.fetch(get(method=b"HEAD"),
                          answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nX-Version: 2\r\nContent-Length: 3\r\n\r\n")
        self.assertEqual((self.field(head, b"X-Version"), self.field(head, b"X-Kept")), (b"2", b"yes"))
        self.assertEqual(self.field(head, b"Cache-Status"), b"netproxy; fwd=stale; fwd-status=200")
        self.assertEqual(split_response(head.value())[2], b"")
        hit = self.fetch()
        self.assertEqual((self.field(hit, b"X-Version"), split_response(hit.value())[2]), (b"2", b"old"))
        self.assertEqual(self.cache_results(), ["MISS", "REVALIDATED", "HIT"])

    def test_other_response(self):
        """A HEAD response with another validator or length leaves the stored response alone."""
        self.fetch(answer=self.stale)
        self.reactor.advance(1)
        for fields in (b'ETag: "new"\r\nContent-Length: 3\r\n', b"Content-Length: 4\r\n"):
            self.fetch(get(method=b"HEAD"),
                       answer=b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nX-Version: 2\r\n%s\r\n" % (fields,))
        self.fetch(answer=self.stale)
        self.assertEqual(self.cache_results(), ["MISS", "MISS", "MISS", "MISS"])


class RangeStoredAloneTests(CacheTestCase):
    """
    Once a range request fetched whole has its range, the client is answered; the rest is stored without it.
    """

    def test_client_leaves(self):
        """A client that closes its connection once it has its range leaves the whole response stored."""
        transport = self.fetch(get(headers=b"Range: bytes=0-9\r\n"))
        origin = self.upstream()
        response = whole()
        self.answer(origin, response[:-4000])
        self.assertEqual(split_response(transport.value())[2], RANGE_BODY[:10])
        self.assertEqual(self.cache_results(), ["MISS"])
        transport.loseConnection()
        self.answer(origin, response[-4000:])
        for _ in range(5):
            self.reactor.advance(0)
        self.assertEqual(len(self.store), 1)
        self.assertEqual(split_response(self.fetch().value())[2], RANGE_BODY)
        self.assertEqual(self.cache_results(), ["MISS", "HIT"])

    def test_next_request_answered_meanwhile(self):
        """A request pipelined after the range is answered while the rest of the body is still arriving."""
        transport = self.fetch(get(headers=b"Range: bytes=0-9\r\n") + get(b"/other"))
        origin = self.upstream()
        response = whole()
        self.answer(origin, response[:-4000])
        self.assertEqual(len(self.reactor.tcpClients), 2)
        other = self.origin()
        self.answer(other, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi")
        self.assertIn(RANGE_BODY[:10] + b"HTTP/1.1 200 OK\r\n", transport.value())
        self.assertTrue(transport.value().endswith(b"\r\n\r\nhi"))
        self.answer(origin, response[-4000:])
        for _ in range(5):
            self.reactor.advance(0)
        self.assertEqual(len(self.store), 1)
        self.assertEqual(self.cache_results(), ["MISS", "MISS"])

    def test_cut_short_after_answer(self):
        """An origin that fails after the client has its range leaves nothing stored, and the client alone."""
        transport = self.fetch(get(headers=b"Range: bytes=0-9\r\n"))
        origin = self.upstream()
        self.answer(origin, whole()[:-4000])
        origin.loseConnection()
        self.assertEqual(len(self.store), 0)
        self.assertTrue(transport.connected)
        self.assertEqual(self.cache_results(), ["MISS"])
