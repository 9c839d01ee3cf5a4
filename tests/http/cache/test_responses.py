"""
Tests for L{netproxy.http.cache.responses}: the responses a request finds, as the
proxy serves them, with an in-memory store.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache import responses as cache_module
from netproxy.http.cache.refresh import parse_rule
from netproxy.http.cache.responses import Cache
from netproxy.http.head import ResponseHead
from netproxy.testing import MemoryStore

KEY = b"http://example.com:80/page"
FIELDS = [
    (b"Date", b"Sat, 21 Nov 2026 19:00:00 GMT"),
    (b"Connection", b"keep-alive, X-Hop"),
    (b"X-Hop", b"dropped"),
    (b"Content-Length", b"4"),
    (b"Age", b"7"),
    (b"Cache-Control", b"max-age=60"),
    (b"ETag", b'"v1"'),
]


def store_response(cache, key=KEY, fields=FIELDS, body=b"body", version=(1, 1)):
    """
    Store a 200 response for C{key} in C{cache}.
    """
    writer = cache.fill(key, [], ResponseHead(version, 200, b"OK", list(fields)), 100.0, 101.0)
    writer.write(body)
    return writer.finish()


class FindTests(SynchronousTestCase):
    """
    L{Cache.find} decodes an entry once, however many requests it answers.
    """

    def setUp(self):
        self.cache = Cache(MemoryStore(1 << 20))

    def test_missing(self):
        """
        Nothing stored: L{None}.
        """
        self.assertIsNone(self.cache.find(KEY, []))

    def test_same_entry_same_found(self):
        """
        An entry unchanged since the last request gives the same L{Found},
        with what was worked out for it the first time.
        """
        store_response(self.cache)
        first = self.cache.find(KEY, [])
        self.assertEqual(first.stored.lifetime, 60.0)
        self.assertIs(self.cache.find(KEY, []), first)

    def test_replaced_entry_new_found(self):
        """
        A response stored anew is decoded anew: nothing of the old one
        is served.
        """
        store_response(self.cache)
        first = self.cache.find(KEY, [])
        store_response(self.cache, fields=[(b"Cache-Control", b"max-age=5")], body=b"new!")
        second = self.cache.find(KEY, [])
        self.assertIsNot(second, first)
        self.assertEqual(second.stored.lifetime, 5.0)

    def test_refreshed_entry_new_found(self):
        """
        A 304 that refreshes the entry makes a new L{Found}, with the new
        fields.
        """
        store_response(self.cache)
        first = self.cache.find(KEY, [])
        self.cache.refresh(first, [(b"Cache-Control", b"max-age=120")], 200.0, 201.0)
        second = self.cache.find(KEY, [])
        self.assertIsNot(second, first)
        self.assertEqual(second.stored.lifetime, 120.0)

    def test_bounded(self):
        """
        At most C{_DECODED_KEPT} decoded responses are kept; entries past
        it are still found.
        """
        self.patch(cache_module, "_DECODED_KEPT", 3)
        keys = [b"http://example.com:80/%d" % (number,) for number in range(5)]
        for key in keys:
            store_response(self.cache, key)
            self.assertEqual(self.cache.find(key, []).entry.length, 4)
        self.assertLessEqual(len(self.cache._decoded), 3)


class RefreshRuleTests(SynchronousTestCase):
    """
    The cache applies the first matching freshness rule to the responses it finds, by their URL.
    """

    def setUp(self):
        self.rules = [parse_rule(r"\.deb$ 60 20% 1440"), parse_rule("^http://example.com/ 5 0% 5")]
        self.cache = Cache(MemoryStore(1 << 20), rules=self.rules)

    def test_rule_for(self):
        """The URL matched has no :80; the first matching rule counts; none may match."""
        self.assertIs(self.cache.rule_for(b"http://example.com:80/a.deb"), self.rules[0])
        self.assertIs(self.cache.rule_for(b"http://example.com:80/a.dsc"), self.rules[1])
        self.assertIsNone(self.cache.rule_for(b"http://example.org:80/a.dsc"))
        self.assertIsNone(Cache(MemoryStore(1 << 20)).rule_for(b"http://example.com:80/a.deb"))

    def test_found_with_rule(self):
        """A response without freshness of its own is found fresh for the rule's MIN, and stays so when refreshed."""
        key = b"http://example.com:80/pool/a.deb"
        store_response(self.cache, key, fields=[(b"Date", b"Sat, 21 Nov 2026 19:00:00 GMT")])
        found = self.cache.find(key, [])
        self.assertEqual((found.stored.rule, found.stored.lifetime), (self.rules[0], 3600.0))
        refreshed = self.cache.refresh(found, [], 200.0, 201.0)
        self.assertEqual(refreshed.stored.lifetime, 3600.0)


class MetadataTests(SynchronousTestCase):
    """
    What L{Cache.fill} stores with a response, and what L{Cache.find} makes
    of metadata it cannot read.
    """

    def setUp(self):
        self.store = MemoryStore(1 << 20)
        self.cache = Cache(self.store)

    def store_meta(self, meta):
        """Store a body under L{KEY} with C{meta}, as the store takes any metadata."""
        writer = self.store.writer(KEY, meta)
        writer.write(b"body")
        writer.finish()

    def test_round_trip(self):
        """Status, reason, version, fields and times come back as stored."""
        store_response(self.cache, version=(1, 0))
        found = self.cache.find(KEY, [])
        self.assertEqual((found.stored.status, found.reason, found.version), (200, b"OK", (1, 0)))
        self.assertEqual(found.stored.headers, FIELDS)
        self.assertEqual((found.stored.request_time, found.stored.response_time), (100.0, 101.0))

    def test_flat(self):
        """The metadata holds no list or dict: the fields and the version are text."""
        store_response(self.cache)
        meta = self.store.get(KEY).meta
        self.assertEqual(meta["version"], "1.1")
        self.assertTrue(all(isinstance(value, (str, int, float)) for value in meta.values()), meta)

    def test_other_version(self):
        """Metadata with the fields as lists, as earlier versions stored it, is a miss."""
        self.store_meta({"status": 200, "reason": "OK", "version": [1, 1], "headers": [["ETag", '"v1"']],
                         "request_time": 100.0, "response_time": 101.0})
        self.assertIsNone(self.cache.find(KEY, []))

    def test_damaged(self):
        """Fields without a colon, or a version that is not one, make a miss."""
        good = {"status": 200, "reason": "OK", "version": "1.1", "fields": "ETag:\"v1\"",
                "request_time": 100.0, "response_time": 101.0}
        self.store_meta(good)
        self.assertEqual(self.cache.find(KEY, []).stored.headers, [(b"ETag", b'"v1"')])
        for damage in ({"fields": "ETag"}, {"version": "1"}, {"version": "x.1"}, {"version": 11}, {"fields": 5}):
            self.store_meta({**good, **damage})
            self.assertIsNone(self.cache.find(KEY, []), damage)


class ServedHeadTests(SynchronousTestCase):
    """
    L{Found.fields} and L{Found.head}: the stored response as it is served.
    """

    def setUp(self):
        self.cache = Cache(MemoryStore(1 << 20))

    def test_fields(self):
        """
        Hop-by-hop fields (and those Connection names), the framing and Age
        are left out, and our Via is added with the origin's version.
        """
        store_response(self.cache, version=(1, 0))
        found = self.cache.find(KEY, [])
        self.assertEqual(
            found.fields,
            [
                (b"Date", b"Sat, 21 Nov 2026 19:00:00 GMT"),
                (b"Cache-Control", b"max-age=60"),
                (b"ETag", b'"v1"'),
                (b"Via", b"1.0 netproxy"),
            ],
        )

    def test_head(self):
        """
        The head is the status line and the fields, without the empty line
        that would end it.
        """
        store_response(self.cache)
        self.assertEqual(
            self.cache.find(KEY, []).head,
            b"HTTP/1.1 200 OK\r\nDate: Sat, 21 Nov 2026 19:00:00 GMT\r\nCache-Control: max-age=60\r\n"
            b'ETag: "v1"\r\nVia: 1.1 netproxy\r\n',
        )
