"""
Tests for L{netproxy.http.cache.vary}: selecting a stored response's variants.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.vary import secondary_key, vary_matches, vary_names


class VaryTests(SynchronousTestCase):
    """
    L{vary_names}, L{vary_matches} and L{secondary_key} select variants
    (RFC 9111 section 4.1).
    """

    def test_names(self):
        """Vary names are lower-cased, each given once, in order; * is kept; no Vary, no names."""
        headers = [(b"Vary", b"Accept-Encoding, ,ACCEPT"), (b"vary", b"accept-encoding, Cookie")]
        self.assertEqual(vary_names(headers), (b"accept-encoding", b"accept", b"cookie"))
        self.assertEqual(vary_names([(b"Vary", b"*")]), (b"*",))
        self.assertEqual(vary_names([]), ())

    def test_two_variants(self):
        """Each of two stored variants matches only requests with its own field value."""
        names = (b"accept-encoding",)
        gzip = [(b"Accept-Encoding", b"gzip")]
        brotli = [(b"accept-encoding", b"br")]
        self.assertTrue(vary_matches(names, gzip, [(b"ACCEPT-ENCODING", b"gzip")]))
        self.assertFalse(vary_matches(names, gzip, brotli))
        self.assertTrue(vary_matches(names, brotli, brotli))

    def test_absent(self):
        """A field absent from both requests matches; absent from one does not."""
        names = (b"accept-language",)
        self.assertTrue(vary_matches(names, [], [(b"Accept", b"*/*")]))
        self.assertFalse(vary_matches(names, [], [(b"Accept-Language", b"en")]))
        self.assertFalse(vary_matches(names, [(b"Accept-Language", b"")], []))

    def test_normalised(self):
        """Field lines are combined and whitespace normalised before comparing."""
        names = (b"accept-encoding",)
        one = [(b"Accept-Encoding", b"gzip,  br")]
        two = [(b"Accept-Encoding", b"gzip "), (b"Accept-Encoding", b"\tbr")]
        self.assertTrue(vary_matches(names, one, two))
        self.assertTrue(vary_matches(names, [(b"Accept-Encoding", b"gzip ,br")], one))

    def test_star(self):
        """Vary * never matches, even identical requests."""
        self.assertFalse(vary_matches((b"*",), [], []))

    def test_every_name(self):
        """All nominated fields must match, and no names always match."""
        names = (b"accept", b"accept-encoding")
        stored_request = [(b"Accept", b"text/html"), (b"Accept-Encoding", b"gzip")]
        self.assertFalse(vary_matches(names, stored_request, [(b"Accept", b"text/html")]))
        self.assertTrue(vary_matches((), stored_request, []))

    def test_key_order(self):
        """The secondary key does not depend on the order of names or fields."""
        request = [(b"Accept-Encoding", b"gzip"), (b"Accept", b"text/html")]
        key = secondary_key((b"accept", b"accept-encoding"), request)
        self.assertEqual(key, secondary_key((b"accept-encoding", b"accept"), request[::-1]))
        self.assertEqual(key, b"accept:text/html\naccept-encoding:gzip")

    def test_key_variants(self):
        """Variants get different keys; absent and empty fields differ; no names give b""."""
        names = (b"accept-encoding",)
        gzip = secondary_key(names, [(b"Accept-Encoding", b"gzip")])
        self.assertNotEqual(gzip, secondary_key(names, [(b"Accept-Encoding", b"br")]))
        self.assertNotEqual(
            secondary_key(names, []), secondary_key(names, [(b"Accept-Encoding", b"")])
        )
        self.assertEqual(secondary_key((), [(b"Accept", b"x")]), b"")

    def test_key_normalised(self):
        """Requests that match give the same key."""
        names = (b"accept-encoding",)
        one = [(b"Accept-Encoding", b"gzip,br")]
        two = [(b"Accept-Encoding", b"gzip"), (b"Accept-Encoding", b"br")]
        self.assertEqual(secondary_key(names, one), secondary_key(names, two))
