"""
Tests for L{netproxy.http.cache.status}: the Cache-Status field of RFC 9211.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.status import cache_name, cache_status, forwarded_status, hit_status, stale_status


class CacheStatusTests(SynchronousTestCase):
    """
    L{cache_status} writes RFC 9211 Cache-Status values.
    """

    def test_hit(self):
        """A hit, with or without its remaining freshness, rounded down even when negative."""
        self.assertEqual(cache_status(hit=True), b"netproxy; hit")
        self.assertEqual(cache_status(hit=True, ttl=57.9), b"netproxy; hit; ttl=57")
        self.assertEqual(cache_status(hit=True, ttl=-0.5), b"netproxy; hit; ttl=-1")

    def test_miss_stored(self):
        """A forwarded miss that was stored."""
        self.assertEqual(
            cache_status(hit=False, fwd="miss", stored=True), b"netproxy; fwd=miss; stored"
        )

    def test_revalidated(self):
        """A stale entry revalidated with a 304."""
        self.assertEqual(
            cache_status(hit=False, fwd="stale", fwd_status=304),
            b"netproxy; fwd=stale; fwd-status=304",
        )

    def test_reasons(self):
        """Each forward reason is written as a token."""
        for reason in ("uri-miss", "request", "bypass", "vary-miss", "method"):
            self.assertEqual(
                cache_status(hit=False, fwd=reason), b"netproxy; fwd=" + reason.encode()
            )

    def test_detail(self):
        """A detail is written as a quoted string, escaped."""
        self.assertEqual(
            cache_status(hit=False, fwd="stale", detail='origin "down"'),
            b'netproxy; fwd=stale; detail="origin \\"down\\""',
        )

    def test_invalid(self):
        """An unknown forward reason or an unprintable detail is a ValueError."""
        self.assertRaises(ValueError, cache_status, hit=False, fwd="nope")
        self.assertRaises(ValueError, cache_status, hit=True, detail="caf\u00e9")

    def test_collapsed_status(self):
        """Cache-Status says a collapsed request was answered with another's response."""
        self.assertEqual(cache_status(hit=True, fwd="uri-miss", collapsed=True),
                         b"netproxy; hit; fwd=uri-miss; collapsed")

    def test_hit_status(self):
        """hit_status gives the same value as cache_status for a hit, negative ttls included."""
        for ttl in (0, 57, -3, 2**31):
            self.assertEqual(hit_status(ttl), cache_status(hit=True, ttl=ttl))


class RememberedStatusTests(SynchronousTestCase):
    """
    The Cache-Status of responses from upstream and of stale ones, as
    L{cache_status} writes them.
    """

    def test_forwarded(self):
        """forwarded_status writes what cache_status writes, asked again or not."""
        for fwd in ("uri-miss", "stale", "request", "bypass", "miss"):
            for status in (200, 304, 404, 503):
                for stored in (False, True):
                    expected = cache_status(hit=False, fwd=fwd, fwd_status=status, stored=stored)
                    self.assertEqual(forwarded_status(fwd, status, stored), expected)
                    self.assertEqual(forwarded_status(fwd, status, stored), expected)
        self.assertEqual(forwarded_status("uri-miss", 200), b"netproxy; fwd=uri-miss; fwd-status=200")

    def test_forwarded_invalid(self):
        """An unknown forward reason is a ValueError, each time."""
        self.assertRaises(ValueError, forwarded_status, "nope", 200)
        self.assertRaises(ValueError, forwarded_status, "nope", 200)

    def test_stale(self):
        """stale_status writes a hit with its freshness left and why it may be served stale."""
        self.assertEqual(stale_status(-1.5, "stale-if-error"), b'netproxy; hit; ttl=-2; detail="stale-if-error"')
        self.assertEqual(stale_status(-30, "stale-while-revalidate"),
                         cache_status(hit=True, ttl=-30, detail="stale-while-revalidate"))


class NameTests(SynchronousTestCase):
    """
    Each cache of a hierarchy names itself in Cache-Status by its Via
    pseudonym.
    """

    def test_token(self):
        """A pseudonym that is a structured-field token is the name as it is."""
        self.assertEqual(cache_name(b"netproxy"), b"netproxy")
        self.assertEqual(cache_name(b"netproxy-1a2b3c4d"), b"netproxy-1a2b3c4d")

    def test_quoted(self):
        """A pseudonym starting with a digit or a token character other than a letter is quoted."""
        self.assertEqual(cache_name(b"1cache"), b'"1cache"')
        self.assertEqual(cache_name(b"~x"), b'"~x"')

    def test_unprintable(self):
        """A name that is not printable ASCII is a ValueError rather than an unreadable field."""
        self.assertRaises(ValueError, cache_name, b"a\x00b")
        self.assertRaises(ValueError, cache_name, b"\xe9t\xe9")

    def test_named(self):
        """Every writer puts the name given first, and the default stays netproxy."""
        name = b"netproxy-1a2b3c4d"
        self.assertEqual(cache_status(hit=True, ttl=5, name=name), b"netproxy-1a2b3c4d; hit; ttl=5")
        self.assertEqual(hit_status(5, name), b"netproxy-1a2b3c4d; hit; ttl=5")
        self.assertEqual(hit_status(5), b"netproxy; hit; ttl=5")
        self.assertEqual(forwarded_status("uri-miss", 200, True, name),
                         b"netproxy-1a2b3c4d; fwd=uri-miss; fwd-status=200; stored")
        self.assertEqual(stale_status(-1, "stale-if-error", name),
                         b'netproxy-1a2b3c4d; hit; ttl=-1; detail="stale-if-error"')
