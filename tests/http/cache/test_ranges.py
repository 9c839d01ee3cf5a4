"""
Tests for L{netproxy.http.cache.ranges}: reading C{Range} and C{If-Range}
against a stored response, malformed and hostile values included.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.ranges import (
    UNSATISFIABLE,
    content_range,
    if_range_holds,
    range_offset,
    requested_range,
    unsatisfied_range,
)
from tests.cache_helpers import T0, date, format_http_date


def asking(value):
    """
    :returns: request fields with one C{Range: value}.
    """
    return [(b"Range", value)]


class RequestedRangeTests(SynchronousTestCase):
    """
    L{requested_range} gives the bytes of one range, a 416, or the full response.
    """

    def test_single(self):
        """FIRST-LAST gives those bytes, LAST capped at the end."""
        self.assertEqual(requested_range(asking(b"bytes=0-99"), 1000), (0, 99))
        self.assertEqual(requested_range(asking(b"bytes=10-10"), 1000), (10, 10))
        self.assertEqual(requested_range(asking(b"bytes=900-5000"), 1000), (900, 999))

    def test_open(self):
        """FIRST- runs to the end."""
        self.assertEqual(requested_range(asking(b"bytes=100-"), 1000), (100, 999))

    def test_suffix(self):
        """-N gives the last N bytes, or all of a shorter body."""
        self.assertEqual(requested_range(asking(b"bytes=-500"), 1000), (500, 999))
        self.assertEqual(requested_range(asking(b"bytes=-5000"), 1000), (0, 999))

    def test_spelling(self):
        """The unit's case and whitespace around the parts do not matter."""
        self.assertEqual(requested_range(asking(b"Bytes = 1 - 2 "), 10), (1, 2))

    def test_unsatisfiable(self):
        """A range starting past the end, a suffix of nothing, or any range of an empty body is 416."""
        for value, length in [(b"bytes=1000-", 1000), (b"bytes=1000-2000", 1000), (b"bytes=-0", 1000),
                              (b"bytes=0-", 0), (b"bytes=-5", 0)]:
            self.assertEqual(requested_range(asking(value), length), UNSATISFIABLE, value)

    def test_ignored(self):
        """No Range, another unit, several ranges or malformed ones: the full response (None)."""
        for headers in ([], asking(b"items=0-1"), asking(b"bytes=0-1,5-6"), asking(b"bytes=5-1"),
                        asking(b"bytes=-"), asking(b"bytes=a-b"), asking(b"bytes=1-2-3"), asking(b"bytes=0x1-2"),
                        asking(b"bytes 0-1"), asking(b"bytes=+1-2"), asking(b"bytes=1.5-2"),
                        [(b"Range", b"bytes=0-1"), (b"Range", b"bytes=2-3")]):
            self.assertIsNone(requested_range(headers, 1000), headers)

    def test_many_ranges(self):
        """Thousands of ranges cost nothing: the field is not even parsed past its size limit."""
        value = b"bytes=" + b",".join(b"%d-%d" % (n, n) for n in range(5000))
        self.assertIsNone(requested_range(asking(value), 10 ** 6))
        self.assertIsNone(requested_range(asking(b"bytes=0-1," * 15), 10 ** 6))

    def test_huge_numbers(self):
        """Numbers far past any body are read as numbers (capped), and digits past 40 are refused."""
        self.assertEqual(requested_range(asking(b"bytes=0-" + b"9" * 40), 1000), (0, 999))
        self.assertEqual(requested_range(asking(b"bytes=" + b"9" * 40 + b"-"), 1000), UNSATISFIABLE)
        self.assertEqual(requested_range(asking(b"bytes=-" + b"9" * 40), 1000), (0, 999))
        self.assertIsNone(requested_range(asking(b"bytes=0-" + b"9" * 41), 1000))


class RangeOffsetTests(SynchronousTestCase):
    """
    L{range_offset} says where a range starts before the length is known.
    """

    def test_offsets(self):
        """FIRST for FIRST-LAST and FIRST-; None for suffixes and anything not one range."""
        self.assertEqual(range_offset(asking(b"bytes=100-199")), 100)
        self.assertEqual(range_offset(asking(b"bytes=7-")), 7)
        for value in (b"bytes=-500", b"bytes=0-1,2-3", b"junk"):
            self.assertIsNone(range_offset(asking(value)), value)
        self.assertIsNone(range_offset([]))


class IfRangeTests(SynchronousTestCase):
    """
    L{if_range_holds} allows a range only on a strong validator's match.
    """

    modified = format_http_date(T0 - 100)
    stored = [date(T0), (b"ETag", b'"v1"'), (b"Last-Modified", modified)]

    def test_absent(self):
        """Without If-Range the range stands."""
        self.assertTrue(if_range_holds([], self.stored))

    def test_etag(self):
        """The same strong tag holds; another, a weak one, or a weak stored tag does not."""
        self.assertTrue(if_range_holds([(b"If-Range", b'"v1"')], self.stored))
        self.assertFalse(if_range_holds([(b"If-Range", b'"v2"')], self.stored))
        self.assertFalse(if_range_holds([(b"If-Range", b'W/"v1"')], self.stored))
        self.assertFalse(if_range_holds([(b"If-Range", b'W/"v1"')], [(b"ETag", b'W/"v1"')]))
        self.assertFalse(if_range_holds([(b"If-Range", b'"v1"')], [(b"ETag", b'W/"v1"')]))
        self.assertFalse(if_range_holds([(b"If-Range", b'"')], [(b"ETag", b'"')]))

    def test_date(self):
        """Last-Modified exactly, and strong (a second before Date), holds; any other date does not."""
        self.assertTrue(if_range_holds([(b"If-Range", self.modified)], self.stored))
        self.assertFalse(if_range_holds([(b"If-Range", format_http_date(T0 - 99))], self.stored))
        weak = [date(T0), (b"Last-Modified", format_http_date(T0))]
        self.assertFalse(if_range_holds([(b"If-Range", format_http_date(T0))], weak))
        self.assertFalse(if_range_holds([(b"If-Range", self.modified)], [(b"Last-Modified", self.modified)]))

    def test_garbage(self):
        """An If-Range that is neither a tag nor a date, or two of them, does not hold."""
        self.assertFalse(if_range_holds([(b"If-Range", b"yesterday")], self.stored))
        self.assertFalse(if_range_holds([(b"If-Range", b'"v1"'), (b"If-Range", b'"v1"')], self.stored))


class FieldTests(SynchronousTestCase):
    """
    The Content-Range values of 206 and 416 responses.
    """

    def test_values(self):
        """bytes FIRST-LAST/LENGTH, and bytes */LENGTH."""
        self.assertEqual(content_range(0, 99, 1000), b"bytes 0-99/1000")
        self.assertEqual(unsatisfied_range(1000), b"bytes */1000")
