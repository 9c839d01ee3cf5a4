"""
Tests for L{netproxy.http.serving}: stored responses sent whole, or the
part a range request asks for (206, 416), with an in-memory store on a
L{MemoryReactorClock}.
"""

from tests.http_helpers import FRESH, CacheTestCase, get, split_response

BODY = bytes(range(256)) * 1024
LARGE = (b"HTTP/1.1 200 OK\r\nCache-Control: max-age=60\r\nETag: \"big\"\r\nLast-Modified: Sat, 21 Nov 2026 18:00:00 GMT\r\n"
         b"Date: Sat, 21 Nov 2026 19:00:00 GMT\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY))


class RangeHitTests(CacheTestCase):
    """
    A range request for a stored complete 200 is answered from the cache.
    """

    def ranged(self, value, *extra):
        """
        :returns: the client transport of a GET with C{Range: value} and C{extra} header lines.
        """
        return self.fetch(get(headers=b"Range: " + value + b"\r\n" + b"".join(extra)))

    def check_partial(self, transport, first, last, body=BODY):
        """The response is a 206 of bytes C{first} to C{last} of C{body}, from the cache."""
        status, fields, received = split_response(transport.value())
        self.assertEqual(status, b"HTTP/1.1 206 Partial Content")
        self.assertEqual(self.field(transport, b"Content-Range"), b"bytes %d-%d/%d" % (first, last, len(body)))
        self.assertEqual(self.field(transport, b"Content-Length"), b"%d" % (last - first + 1,))
        self.assertEqual(received, body[first:last + 1])
        self.assertTrue(self.field(transport, b"Cache-Status").startswith(b"netproxy; hit"))

    def test_large_ranges(self):
        """Single, open and suffix ranges of a large stored body are 206s with exactly their bytes."""
        self.fetch(answer=LARGE)
        self.check_partial(self.ranged(b"bytes=0-99"), 0, 99)
        self.check_partial(self.ranged(b"bytes=100000-"), 100000, len(BODY) - 1)
        self.check_partial(self.ranged(b"bytes=-500"), len(BODY) - 500, len(BODY) - 1)
        self.check_partial(self.ranged(b"bytes=70000-200000"), 70000, 200000)
        self.assertEqual(self.upstream_requests(), 1)
        self.assertEqual(self.cache_results(), ["MISS", "HIT", "HIT", "HIT", "HIT"])

    def test_small_held_body(self):
        """A small body held in memory is cut too."""
        self.fetch(answer=FRESH)
        self.check_partial(self.ranged(b"bytes=1-3"), 1, 3, b"fresh")
        self.check_partial(self.ranged(b"bytes=-2"), 3, 4, b"fresh")

    def test_unsatisfiable(self):
        """A range past the end gets 416 with Content-Range bytes */LENGTH and no body."""
        self.fetch(answer=LARGE)
        transport = self.ranged(b"bytes=%d-" % (len(BODY),))
        status, _, received = split_response(transport.value())
        self.assertEqual((status, received), (b"HTTP/1.1 416 Range Not Satisfiable", b""))
        self.assertEqual(self.field(transport, b"Content-Range"), b"bytes */%d" % (len(BODY),))
        self.assertEqual(self.field(transport, b"Content-Length"), b"0")
        self.assertTrue(transport.connected)

    def test_full_response(self):
        """Several ranges, a malformed one, or another unit get the full stored 200."""
        self.fetch(answer=LARGE)
        for value in (b"bytes=0-1,5-6", b"bytes=9-1", b"pages=1-2"):
            status, _, received = split_response(self.ranged(value).value())
            self.assertEqual((status, received), (b"HTTP/1.1 200 OK", BODY), value)

    def test_if_range(self):
        """If-Range with the stored strong ETag or Last-Modified gets the 206; another validator the full 200."""
        self.fetch(answer=LARGE)
        self.check_partial(self.ranged(b"bytes=0-9", b'If-Range: "big"\r\n'), 0, 9)
        self.check_partial(self.ranged(b"bytes=0-9", b"If-Range: Sat, 21 Nov 2026 18:00:00 GMT\r\n"), 0, 9)
        for value in (b'"other"', b'W/"big"', b"Sat, 21 Nov 2026 18:00:01 GMT"):
            status, _, received = split_response(self.ranged(b"bytes=0-9", b"If-Range: " + value + b"\r\n").value())
            self.assertEqual((status, received), (b"HTTP/1.1 200 OK", BODY), value)
        self.assertEqual(self.upstream_requests(), 1)

    def test_head_ignores_range(self):
        """A HEAD with Range gets the full response's head."""
        self.fetch(answer=LARGE)
        transport = self.fetch(get(method=b"HEAD", headers=b"Range: bytes=0-9\r\n"))
        self.assertEqual(split_response(transport.value())[0], b"HTTP/1.1 200 OK")
        self.assertEqual(self.field(transport, b"Content-Length"), b"%d" % (len(BODY),))

    def test_not_modified_first(self):
        """A matching If-None-Match gets 304, whatever the Range."""
        self.fetch(answer=LARGE)
        transport = self.ranged(b"bytes=0-9", b'If-None-Match: "big"\r\n')
        self.assertEqual(split_response(transport.value())[0], b"HTTP/1.1 304 Not Modified")

    def test_pipelined_after_range(self):
        """A request pipelined after a 206 is answered on the same connection."""
        self.fetch(answer=LARGE)
        transport = self.fetch(get(headers=b"Range: bytes=0-9\r\n") + get(headers=b"Range: bytes=10-19\r\n"))
        data = transport.value()
        self.assertEqual(data.count(b"HTTP/1.1 206 Partial Content"), 2)
        self.assertTrue(data.endswith(BODY[10:20]))


class DamagedRangeTests(CacheTestCase):
    """
    A stored body shorter than its record is discarded, not cut.
    """

    def test_truncated(self):
        """A range of a body that ends early is not served: the origin is asked instead."""
        self.fetch(answer=LARGE)
        entry = self.store.get(b"http://127.0.0.1:8000/")
        stored = self.store._entries[entry.key]
        stored.body = stored.body[:100000]
        transport = self.fetch(get(headers=b"Range: bytes=0-9\r\n"), answer=LARGE)
        self.assertEqual(self.upstream_requests(), 2)
        self.assertEqual(split_response(transport.value())[0], b"HTTP/1.1 200 OK")
