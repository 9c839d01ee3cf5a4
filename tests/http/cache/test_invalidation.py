"""
Tests for L{netproxy.http.cache.invalidation}: what an unsafe request invalidates.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.invalidation import invalidated_urls

URL = b"http://example.com/a/b"


class InvalidatedUrlsTests(SynchronousTestCase):
    """
    L{invalidated_urls} applies RFC 9111 section 4.4.
    """

    def test_safe_methods(self):
        """Safe methods invalidate nothing."""
        for method in (b"GET", b"HEAD", b"OPTIONS", b"TRACE"):
            self.assertEqual(invalidated_urls(method, 200, URL, []), [], method)

    def test_unsafe_methods(self):
        """Unsafe and unknown methods invalidate the request URL on 2xx and 3xx."""
        for method in (b"POST", b"PUT", b"DELETE", b"PATCH", b"FROBNICATE"):
            self.assertEqual(invalidated_urls(method, 204, URL, []), [URL], method)
        self.assertEqual(invalidated_urls(b"POST", 303, URL, []), [URL])

    def test_errors(self):
        """An error status invalidates nothing."""
        for status in (400, 404, 500, 503):
            self.assertEqual(invalidated_urls(b"POST", status, URL, []), [], status)

    def test_location_same_origin(self):
        """A relative or same-origin Location and Content-Location are invalidated too."""
        headers = [(b"Location", b"../c?d=1"), (b"Content-Location", b"http://EXAMPLE.com:80/e")]
        self.assertEqual(
            invalidated_urls(b"POST", 201, URL, headers),
            [URL, b"http://example.com/c?d=1", b"http://EXAMPLE.com:80/e"],
        )

    def test_location_other_origin(self):
        """A Location on another host, port or scheme, or unparseable, is not invalidated."""
        for location in (
            b"http://other.example/a",
            b"http://example.com:8080/a",
            b"https://example.com/a",
            b"http://example.com:port/x",
        ):
            headers = [(b"Location", location)]
            self.assertEqual(invalidated_urls(b"PUT", 200, URL, headers), [URL], location)

    def test_fragment_and_duplicate(self):
        """Fragments are dropped and a URL is listed once."""
        headers = [(b"Location", b"/a/b#top"), (b"Content-Location", b"b")]
        self.assertEqual(invalidated_urls(b"DELETE", 200, URL, headers), [URL])
