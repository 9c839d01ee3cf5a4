"""
Tests for L{netproxy.http.cache.validation}: revalidating a stored response,
answering a client's conditional GET from it, and refreshing it from a 304.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.fields import Fields
from netproxy.http.cache.validation import head_matches, not_modified, updated_headers, validators
from tests.cache_helpers import T0, date, format_http_date

# A stored response with both validators, last modified at T0.
VALIDATED = [(b"ETag", b'"v1"'), (b"Last-Modified", format_http_date(T0)), date(T0 + 100)]


class ValidatorsTests(SynchronousTestCase):
    """
    L{validators} builds the preconditions of a revalidation.
    """

    def test_both(self):
        """An ETag and a Last-Modified give If-None-Match and If-Modified-Since."""
        modified = format_http_date(T0)
        headers = [(b"ETag", b'W/"v1"'), (b"Last-Modified", modified)]
        self.assertEqual(
            validators(headers), [(b"If-None-Match", b'W/"v1"'), (b"If-Modified-Since", modified)]
        )

    def test_etag_only(self):
        """Only an ETag gives only If-None-Match."""
        self.assertEqual(validators([(b"etag", b'"a"')]), [(b"If-None-Match", b'"a"')])

    def test_none(self):
        """No validator, or an invalid Last-Modified, gives no precondition."""
        self.assertEqual(validators([date(T0)]), [])
        self.assertEqual(validators([(b"Last-Modified", b"0")]), [])


class NotModifiedTests(SynchronousTestCase):
    """
    L{not_modified} evaluates a client's conditional GET against a stored
    response (RFC 9110 section 13).
    """

    def test_match(self):
        """If-None-Match with the stored entity tag is satisfied."""
        self.assertTrue(not_modified([(b"If-None-Match", b'"v1"')], VALIDATED))

    def test_weak(self):
        """Entity tags compare weakly, whichever side is weak."""
        self.assertTrue(not_modified([(b"If-None-Match", b'W/"v1"')], VALIDATED))
        self.assertTrue(not_modified([(b"If-None-Match", b'"v1"')], [(b"ETag", b'W/"v1"')]))

    def test_list(self):
        """A match anywhere in the list, over several fields, is enough."""
        request = [(b"If-None-Match", b'"a", "b"'), (b"if-none-match", b'"v1"')]
        self.assertTrue(not_modified(request, VALIDATED))

    def test_no_match(self):
        """Other entity tags are not satisfied."""
        self.assertFalse(not_modified([(b"If-None-Match", b'"v2", W/"v0"')], VALIDATED))

    def test_star(self):
        """If-None-Match: * is satisfied by any stored response."""
        self.assertTrue(not_modified([(b"If-None-Match", b"*")], [date(T0)]))

    def test_comma_in_tag(self):
        """A comma inside an entity tag is part of it."""
        request = [(b"If-None-Match", b'"a,b"')]
        self.assertTrue(not_modified(request, [(b"ETag", b'"a,b"')]))
        self.assertFalse(not_modified(request, [(b"ETag", b'"a"')]))

    def test_malformed(self):
        """A malformed If-None-Match, or a stored response without ETag, is not satisfied."""
        self.assertFalse(not_modified([(b"If-None-Match", b"v1")], VALIDATED))
        self.assertFalse(not_modified([(b"If-None-Match", b'"v1"')], [date(T0)]))

    def test_precedence(self):
        """If-None-Match decides even when If-Modified-Since would be satisfied."""
        request = [(b"If-None-Match", b'"v2"'), (b"If-Modified-Since", format_http_date(T0 + 10))]
        self.assertFalse(not_modified(request, VALIDATED))

    def test_modified_since(self):
        """If-Modified-Since at or after Last-Modified is satisfied, before it is not."""
        self.assertTrue(not_modified([(b"If-Modified-Since", format_http_date(T0))], VALIDATED))
        self.assertFalse(
            not_modified([(b"If-Modified-Since", format_http_date(T0 - 1))], VALIDATED)
        )

    def test_modified_since_invalid(self):
        """An invalid or repeated If-Modified-Since is ignored."""
        self.assertFalse(not_modified([(b"If-Modified-Since", b"0")], VALIDATED))
        later = (b"If-Modified-Since", format_http_date(T0 + 10))
        self.assertFalse(not_modified([later, later], VALIDATED))

    def test_modified_since_date(self):
        """Without Last-Modified, the stored Date is compared."""
        self.assertTrue(not_modified([(b"If-Modified-Since", format_http_date(T0))], [date(T0)]))
        self.assertFalse(
            not_modified([(b"If-Modified-Since", format_http_date(T0))], [date(T0 + 1)])
        )
        self.assertFalse(not_modified([(b"If-Modified-Since", format_http_date(T0))], []))


class UpdatedHeadersTests(SynchronousTestCase):
    """
    L{updated_headers} refreshes stored fields from a 304 (RFC 9111 section 3.2).
    """

    def test_replace(self):
        """A 304's field replaces every stored field of that name; the others stay."""
        stored_headers = [
            (b"Cache-Control", b"max-age=1"),
            (b"X-A", b"1"),
            (b"cache-control", b"public"),
        ]
        result = updated_headers(stored_headers, [(b"CACHE-CONTROL", b"max-age=60")])
        self.assertEqual(result, [(b"X-A", b"1"), (b"CACHE-CONTROL", b"max-age=60")])

    def test_content_length(self):
        """A 304's Content-Length never changes the stored one."""
        result = updated_headers([(b"Content-Length", b"1234")], [(b"Content-Length", b"0")])
        self.assertEqual(result, [(b"Content-Length", b"1234")])

    def test_body_fields(self):
        """
        The framing and Content-Range are not updated; validators, and the
        Content-Type and Content-Encoding of the bytes stored as received,
        are (RFC 9111 section 3.2).
        """
        kept = [(b"Content-Range", b"bytes 0-1/2")]
        update = [
            (b"Content-Type", b"image/png"),
            (b"content-encoding", b"br"),
            (b"Content-Range", b"bytes 0-9/10"),
            (b"Transfer-Encoding", b"chunked"),
            (b"ETag", b'"v2"'),
        ]
        stored = [(b"Content-Type", b"text/html"), (b"Content-Encoding", b"gzip"), *kept, (b"ETag", b'"v1"')]
        self.assertEqual(updated_headers(stored, update), kept + [
            (b"Content-Type", b"image/png"), (b"content-encoding", b"br"), (b"ETag", b'"v2"')])

    def test_connection_fields(self):
        """Hop-by-hop fields, including those the 304's Connection names, are not updated."""
        update = [(b"Connection", b"X-Hop"), (b"X-Hop", b"1"), (b"Keep-Alive", b"timeout=5")]
        self.assertEqual(updated_headers([(b"X-A", b"1")], update), [(b"X-A", b"1")])

    def test_age(self):
        """The stored Age is dropped, and replaced by the 304's own when it has one."""
        stored_headers = [(b"Age", b"500"), date(T0)]
        self.assertEqual(updated_headers(stored_headers, [date(T0 + 9)]), [date(T0 + 9)])
        self.assertEqual(
            updated_headers(stored_headers, [(b"Age", b"3")]), [date(T0), (b"Age", b"3")]
        )


class NotModifiedFieldsTests(SynchronousTestCase):
    """
    L{not_modified} takes the request's L{Fields} too, with the same answers.
    """

    def test_same_answers(self):
        """Conditional or not, fields and their list give the same answer."""
        requests = [
            [],
            [(b"Host", b"h")],
            [(b"If-None-Match", b'"v1"')],
            [(b"if-none-match", b'"v2"')],
            [(b"If-None-Match", b"*")],
            [(b"If-Modified-Since", format_http_date(T0 + 10))],
            [(b"IF-MODIFIED-SINCE", format_http_date(T0 - 10))],
            [(b"If-Match", b'"v1"')],
        ]
        for request in requests:
            self.assertEqual(not_modified(Fields(request), VALIDATED), not_modified(request, VALIDATED), request)


class HeadMatchesTests(SynchronousTestCase):
    """
    L{head_matches} selects the stored response a 200 to HEAD may freshen (RFC 9111 section 4.3.5).
    """

    stored = [(b"ETag", b'"v1"'), (b"Last-Modified", b"Sat, 21 Nov 2026 18:00:00 GMT"), (b"Content-Length", b"5")]

    def test_etag(self):
        """The same tag, weak or strong, matches; another does not."""
        self.assertTrue(head_matches(self.stored, [(b"ETag", b'"v1"')]))
        self.assertTrue(head_matches(self.stored, [(b"ETag", b'W/"v1"')]))
        self.assertFalse(head_matches(self.stored, [(b"ETag", b'"v2"')]))
        self.assertFalse(head_matches([], [(b"ETag", b'"v1"')]))

    def test_last_modified(self):
        """Without a tag, the same Last-Modified matches."""
        self.assertTrue(head_matches(self.stored, [(b"Last-Modified", b"Sat, 21 Nov 2026 18:00:00 GMT")]))
        self.assertFalse(head_matches(self.stored, [(b"Last-Modified", b"Sat, 21 Nov 2026 18:00:01 GMT")]))

    def test_no_validators(self):
        """Without validators it matches only a stored response without any."""
        self.assertTrue(head_matches([(b"Content-Length", b"5")], []))
        self.assertFalse(head_matches(self.stored, []))

    def test_other_length(self):
        """Another Content-Length never matches: it describes another body."""
        self.assertFalse(head_matches(self.stored, [(b"ETag", b'"v1"'), (b"Content-Length", b"6")]))
        self.assertTrue(head_matches(self.stored, [(b"ETag", b'"v1"'), (b"Content-Length", b"5")]))
