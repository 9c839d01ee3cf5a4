"""
Tests for L{netproxy.http.cache.fields}: reading Cache-Control directives and
HTTP-dates, including the invalid and edge values origins really send.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.fields import Fields, as_fields, delta_seconds, directives, parse_cache_control, parse_http_date
from tests.cache_helpers import T0, format_http_date

RFC_EXAMPLE = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT


class ParseCacheControlTests(SynchronousTestCase):
    """
    L{parse_cache_control} reads directives from every field value.
    """

    def test_names_lowered(self):
        """Directive names are lower-cased and a directive without value maps to None."""
        self.assertEqual(
            parse_cache_control([b"No-Cache, MAX-AGE=5"]), {"no-cache": None, "max-age": "5"}
        )

    def test_several_fields(self):
        """Directives of every field value are collected."""
        self.assertEqual(
            parse_cache_control([b"public", b"s-maxage=9"]), {"public": None, "s-maxage": "9"}
        )

    def test_quoted_value(self):
        """A quoted-string value is unquoted, quoted pairs included."""
        self.assertEqual(
            parse_cache_control([rb'max-age="10", x="a\"b"']), {"max-age": "10", "x": 'a"b'}
        )

    def test_comma_in_quotes(self):
        """A comma inside a quoted string does not end the directive."""
        self.assertEqual(
            parse_cache_control([b'no-cache="Set-Cookie, X-Foo", private']),
            {"no-cache": "Set-Cookie, X-Foo", "private": None},
        )

    def test_first_duplicate_wins(self):
        """Of a directive given twice, even in two fields, the first occurrence counts."""
        self.assertEqual(parse_cache_control([b"max-age=10", b"max-age=100"]), {"max-age": "10"})

    def test_whitespace(self):
        """Whitespace around elements is ignored; around the equals sign it stays, to make the value invalid."""
        self.assertEqual(
            parse_cache_control([b" ,max-age=7 ,, \tpublic\t"]), {"max-age": "7", "public": None}
        )
        for written in (b"max-age =7", b"max-age= 7", b"max-age = 7", b"max-age\t=7"):
            self.assertIsNone(delta_seconds(parse_cache_control([written])["max-age"]), written)

    def test_bad_names_skipped(self):
        """An element whose name is not a token is skipped, the others kept."""
        self.assertEqual(parse_cache_control([b"=5, a b, no-store"]), {"no-store": None})

    def test_empty(self):
        """An empty value is kept as the empty string, unlike a missing one; no field, no directive."""
        self.assertEqual(
            parse_cache_control([b"max-age=, public"]), {"max-age": "", "public": None}
        )
        self.assertEqual(parse_cache_control([]), {})

    def test_unterminated_quote(self):
        """An unterminated quote swallows the rest, so it cannot smuggle a directive."""
        self.assertNotIn("max-age", parse_cache_control([b'x="a, max-age=99']))


class HttpDateTests(SynchronousTestCase):
    """
    L{parse_http_date} reads the three HTTP-date forms, among them the
    IMF-fixdate the tests write with L{tests.cache_helpers.format_http_date}.
    """

    def test_imf_fixdate(self):
        """An IMF-fixdate gives its POSIX time."""
        self.assertEqual(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT"), RFC_EXAMPLE)

    def test_rfc850(self):
        """The obsolete RFC 850 form gives the same time."""
        self.assertEqual(parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT"), RFC_EXAMPLE)

    def test_asctime(self):
        """The asctime form, with its space-padded day, gives the same time."""
        self.assertEqual(parse_http_date(b"Sun Nov  6 08:49:37 1994"), RFC_EXAMPLE)

    def test_two_digit_years(self):
        """A two-digit year of 70 or more is 19xx, below 70 it is 20xx."""
        self.assertEqual(parse_http_date(b"Thursday, 01-Jan-70 00:00:00 GMT"), 0.0)
        self.assertEqual(
            parse_http_date(b"Tuesday, 01-Jan-30 00:00:00 GMT"),
            parse_http_date(b"Tue, 01 Jan 2030 00:00:00 GMT"),
        )

    def test_invalid(self):
        """Values that are not HTTP-dates, such as 0, give None."""
        for value in (b"0", b"", b"-1", b"tomorrow", b"1994-11-06T08:49:37Z"):
            self.assertIsNone(parse_http_date(value), value)

    def test_impossible(self):
        """A well-formed but impossible date or time gives None."""
        self.assertIsNone(parse_http_date(b"Sun, 30 Feb 1994 08:49:37 GMT"))
        self.assertIsNone(parse_http_date(b"Sun, 06 Nov 1994 25:49:37 GMT"))

    def test_case_and_zone(self):
        """HTTP-date is case-sensitive and always GMT."""
        self.assertIsNone(parse_http_date(b"Sun, 06 nov 1994 08:49:37 GMT"))
        self.assertIsNone(parse_http_date(b"Sun, 06 Nov 1994 08:49:37 UTC"))

    def test_surrounding_whitespace(self):
        """Whitespace around the value is ignored."""
        self.assertEqual(parse_http_date(b" Sun, 06 Nov 1994 08:49:37 GMT "), RFC_EXAMPLE)

    def test_format(self):
        """The tests' date writer gives IMF-fixdate, dropping the fraction, and what it writes parses back."""
        self.assertEqual(format_http_date(RFC_EXAMPLE + 0.9), b"Sun, 06 Nov 1994 08:49:37 GMT")
        self.assertEqual(parse_http_date(format_http_date(T0)), T0)


class RememberedDirectivesTests(SynchronousTestCase):
    """
    L{parse_cache_control} remembers the directives of short values, and
    hands each caller its own copy.
    """

    def test_copies(self):
        """Changing the directives one caller got changes nothing for the next."""
        first = parse_cache_control([b"max-age=60, public"])
        first["max-age"] = "0"
        del first["public"]
        self.assertEqual(parse_cache_control([b"max-age=60, public"]), {"max-age": "60", "public": None})

    def test_long_value(self):
        """A value too long to be remembered is read like any other."""
        value = b"max-age=5, " + b", ".join(b"x-%d=%d" % (i, i) for i in range(100))
        directives = parse_cache_control([value])
        self.assertEqual((directives["max-age"], directives["x-99"], len(directives)), ("5", "99", 101))

    def test_same_joined_value(self):
        """Values that join to the same text give the same directives, however split."""
        self.assertEqual(parse_cache_control([b"public", b"max-age=5"]), parse_cache_control([b"public,max-age=5"]))


class FieldsTests(SynchronousTestCase):
    """
    L{Fields} reads what the cache's rules ask of a message once.
    """

    def test_names(self):
        """The names are lower-cased, each once."""
        fields = Fields([(b"ETag", b'"a"'), (b"Vary", b"Accept"), (b"VARY", b"Cookie")])
        self.assertEqual(fields.names, {b"etag", b"vary"})

    def test_directives(self):
        """The directives are those L{directives} reads, worked out once."""
        headers = [(b"Date", b"x"), (b"cache-CONTROL", b"Max-Age=5"), (b"Cache-Control", b"max-age=9, private")]
        fields = Fields(headers)
        self.assertEqual(fields.directives, directives(headers))
        self.assertEqual(fields.directives, {"max-age": "5", "private": None})
        self.assertIs(fields.directives, fields.directives)

    def test_pragma(self):
        """Without Cache-Control, Pragma: no-cache counts as no-cache; other Pragmas count for nothing."""
        self.assertEqual(Fields([(b"Pragma", b"no-cache")]).directives, {"no-cache": None})
        self.assertEqual(Fields([(b"Pragma", b"x-other")]).directives, {})
        self.assertEqual(Fields([(b"Pragma", b"no-cache"), (b"Cache-Control", b"max-age=1")]).directives,
                         {"max-age": "1"})

    def test_none(self):
        """A message without fields has no names and no directives."""
        fields = Fields([])
        self.assertEqual((fields.names, fields.directives), (set(), {}))

    def test_malformed(self):
        """A malformed Cache-Control reads as parse_cache_control reads it, never raising."""
        headers = [(b"Cache-Control", b'=5, ,"x", max-age = 7, no-store="unterminated')]
        self.assertEqual(Fields(headers).directives, parse_cache_control([headers[0][1]]))
        self.assertEqual(sorted(Fields(headers).directives), ["max-age", "no-store"])

    def test_as_fields(self):
        """as_fields wraps a list of fields, and gives back what already is L{Fields}."""
        fields = as_fields([(b"A", b"1")])
        self.assertEqual(fields.headers, [(b"A", b"1")])
        self.assertIs(as_fields(fields), fields)
