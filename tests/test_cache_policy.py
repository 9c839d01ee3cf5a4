"""
Tests for L{netproxy.cache.policy}: the shared-cache rules of RFC 9111, with
RFC 5861's stale-while-revalidate and stale-if-error and RFC 9211's
Cache-Status, including the invalid and edge values origins really send.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.cache.policy import (
    HEURISTIC_CAP,
    MAX_DELTA,
    Assessment,
    Stored,
    assess,
    cache_status,
    collapsible,
    current_age,
    directives,
    format_http_date,
    freshness_lifetime,
    invalidated_urls,
    not_modified,
    parse_cache_control,
    parse_http_date,
    secondary_key,
    shareable,
    storable,
    updated_headers,
    validators,
    vary_matches,
    vary_names,
)

# 2001-09-09T01:46:40Z: a whole second, so formatted dates round-trip.
T0 = 1_000_000_000.0
DAY = 24 * 60 * 60
RFC_EXAMPLE = 784111777.0  # Sun, 06 Nov 1994 08:49:37 GMT
URL = b"http://example.com/a/b"


def date(seconds):
    """
    :returns: a C{Date} field for C{seconds}.
    """
    return (b"Date", format_http_date(seconds))


# A stored response with both validators, last modified at T0.
VALIDATED = [(b"ETag", b'"v1"'), (b"Last-Modified", format_http_date(T0)), date(T0 + 100)]


def cc(value):
    """
    :returns: a header list with one Cache-Control field.
    """
    return [(b"Cache-Control", value)]


def stored(headers, status=200, request_time=T0, response_time=T0):
    """
    :returns: a L{Stored} response received at C{response_time}.
    """
    return Stored(status, headers, request_time, response_time)


def fresh_for(seconds, *extra):
    """
    :returns: the fields of a response received at C{T0}, fresh for
        C{seconds}, plus C{extra} directives.
    """
    value = b", ".join([b"max-age=%d" % seconds, *extra])
    return [date(T0), (b"Cache-Control", value)]


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
        """Whitespace around elements and around the equals sign is ignored."""
        self.assertEqual(
            parse_cache_control([b" ,max-age = 7 ,, \tpublic\t"]), {"max-age": "7", "public": None}
        )

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
    L{parse_http_date} reads the three HTTP-date forms; L{format_http_date}
    writes IMF-fixdate.
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
        """Formatting writes IMF-fixdate, dropping the fraction, and parses back."""
        self.assertEqual(format_http_date(RFC_EXAMPLE + 0.9), b"Sun, 06 Nov 1994 08:49:37 GMT")
        self.assertEqual(parse_http_date(format_http_date(T0)), T0)


class StorableTests(SynchronousTestCase):
    """
    L{storable} applies RFC 9111 sections 3 and 3.5 for a shared cache.
    """

    def test_fresh_get(self):
        """A 200 to GET with max-age is stored."""
        self.assertTrue(storable(b"GET", [], 200, fresh_for(60)))

    def test_other_methods(self):
        """Only responses to GET are stored."""
        for method in (b"HEAD", b"POST", b"PUT", b"get"):
            self.assertFalse(storable(method, [], 200, fresh_for(60)), method)

    def test_unstored_statuses(self):
        """Interim, partial-content and 304 responses are never stored."""
        for status in (100, 103, 206, 304):
            self.assertFalse(storable(b"GET", [], status, fresh_for(60)), status)

    def test_non_heuristic_status_needs_expiry(self):
        """A 302 or 307 is stored with max-age or Expires, not on a validator alone."""
        self.assertFalse(storable(b"GET", [], 302, [(b"ETag", b'"a"')]))
        self.assertTrue(storable(b"GET", [], 302, fresh_for(60)))
        expires = [date(T0), (b"Expires", format_http_date(T0 + 60))]
        self.assertTrue(storable(b"GET", [], 307, expires))

    def test_public_any_status(self):
        """public lets a response of a non-heuristic status with a validator be stored."""
        self.assertTrue(storable(b"GET", [], 500, cc(b"public") + [(b"ETag", b'"a"')]))

    def test_heuristic_status(self):
        """A heuristically cacheable status with Last-Modified is stored."""
        headers = [date(T0), (b"Last-Modified", format_http_date(T0 - DAY))]
        self.assertTrue(storable(b"GET", [], 404, headers))

    def test_validator_only(self):
        """A 200 with only an ETag is stored, to be revalidated."""
        self.assertTrue(storable(b"GET", [], 200, [(b"ETag", b'"a"')]))

    def test_useless(self):
        """A 200 without expiry or validator, stale at once and never revalidable, is not stored."""
        self.assertFalse(storable(b"GET", [], 200, [date(T0)]))

    def test_no_store(self):
        """no-store in the response or the request, in any case, prevents storage."""
        self.assertFalse(storable(b"GET", [], 200, fresh_for(60, b"no-store")))
        self.assertFalse(storable(b"GET", cc(b"no-store"), 200, fresh_for(60)))
        self.assertFalse(storable(b"GET", [], 200, [(b"CACHE-CONTROL", b"NO-STORE, max-age=60")]))

    def test_private(self):
        """private, qualified or not, prevents storage in a shared cache."""
        self.assertFalse(storable(b"GET", [], 200, fresh_for(60, b"private")))
        self.assertFalse(storable(b"GET", [], 200, fresh_for(60, b'private="Set-Cookie"')))

    def test_no_cache_stored(self):
        """A no-cache response with a validator is stored, to be revalidated on use."""
        self.assertTrue(storable(b"GET", [], 200, cc(b"no-cache") + [(b"ETag", b'"a"')]))

    def test_authorization(self):
        """With Authorization, only public, s-maxage or must-revalidate allow storing."""
        request = [(b"authorization", b"Basic eA==")]
        self.assertFalse(storable(b"GET", request, 200, fresh_for(60)))
        for directive in (b"public", b"s-maxage=60", b"must-revalidate"):
            self.assertTrue(storable(b"GET", request, 200, fresh_for(60, directive)), directive)

    def test_set_cookie(self):
        """A response with Set-Cookie is not stored unless it says public or s-maxage."""
        cookie = (b"Set-Cookie", b"id=1")
        self.assertFalse(storable(b"GET", [], 200, fresh_for(60) + [cookie]))
        self.assertTrue(storable(b"GET", [], 200, fresh_for(60, b"public") + [cookie]))
        self.assertTrue(storable(b"GET", [], 200, fresh_for(60, b"s-maxage=5") + [cookie]))

    def test_vary_star(self):
        """A response with Vary: * is not stored; one varying on named fields is."""
        self.assertFalse(storable(b"GET", [], 200, fresh_for(60) + [(b"Vary", b"Accept, *")]))
        self.assertTrue(storable(b"GET", [], 200, fresh_for(60) + [(b"Vary", b"Accept")]))

    def test_must_understand(self):
        """must-understand overrides no-store for an understood status only."""
        headers = fresh_for(60, b"must-understand, no-store")
        self.assertTrue(storable(b"GET", [], 200, headers))
        self.assertFalse(storable(b"GET", [], 302, headers))


class FreshnessLifetimeTests(SynchronousTestCase):
    """
    L{freshness_lifetime} follows RFC 9111 section 4.2.1, stale on doubt.
    """

    def lifetime(self, value, *extra, status=200):
        """
        :returns: the lifetime of a response with Cache-Control C{value}.
        """
        return freshness_lifetime(status, [date(T0), *cc(value), *extra])

    def test_max_age(self):
        """max-age gives the lifetime."""
        self.assertEqual(self.lifetime(b"max-age=60"), 60)

    def test_s_maxage_first(self):
        """s-maxage overrides max-age in a shared cache, longer or shorter."""
        self.assertEqual(self.lifetime(b"max-age=60, s-maxage=600"), 600)
        self.assertEqual(self.lifetime(b"s-maxage=6, max-age=60"), 6)

    def test_max_age_over_expires(self):
        """max-age overrides Expires."""
        self.assertEqual(self.lifetime(b"max-age=60", (b"Expires", format_http_date(T0 + DAY))), 60)

    def test_negative(self):
        """A negative max-age makes the response stale."""
        self.assertEqual(self.lifetime(b"max-age=-1"), 0)

    def test_invalid(self):
        """A max-age that is not delta-seconds makes the response stale, despite Expires."""
        for value in (b"max-age=abc", b"max-age=1.5", b"max-age=", b"max-age", b"max-age=10 20"):
            self.assertEqual(self.lifetime(value), 0, value)
        self.assertEqual(self.lifetime(b"max-age=x", (b"Expires", format_http_date(T0 + DAY))), 0)

    def test_quoted(self):
        """A quoted max-age is accepted."""
        self.assertEqual(self.lifetime(b'max-age="10"'), 10)

    def test_duplicate(self):
        """Of two max-age directives the first counts."""
        self.assertEqual(self.lifetime(b"max-age=10, max-age=1000"), 10)

    def test_invalid_s_maxage(self):
        """An invalid s-maxage makes the response stale despite a valid max-age."""
        self.assertEqual(self.lifetime(b"s-maxage=soon, max-age=60"), 0)

    def test_huge(self):
        """A huge max-age counts as 2**31 seconds."""
        self.assertEqual(self.lifetime(b"max-age=99999999999999999999"), MAX_DELTA)

    def test_expires(self):
        """Without max-age, the lifetime is Expires minus Date."""
        headers = [date(T0), (b"Expires", format_http_date(T0 + 90))]
        self.assertEqual(freshness_lifetime(200, headers), 90)

    def test_expires_zero(self):
        """An invalid Expires such as 0 means already expired."""
        self.assertEqual(freshness_lifetime(200, [date(T0), (b"Expires", b"0")], T0), 0)

    def test_expires_in_past(self):
        """An Expires before Date gives a zero lifetime, not a negative one."""
        headers = [date(T0), (b"Expires", format_http_date(T0 - 90))]
        self.assertEqual(freshness_lifetime(200, headers), 0)

    def test_expires_without_date(self):
        """Without a valid Date, the response time stands in for it."""
        expires = (b"Expires", format_http_date(T0 + 90))
        self.assertEqual(freshness_lifetime(200, [expires], T0 + 30), 60)
        self.assertEqual(freshness_lifetime(200, [(b"Date", b"yesterday"), expires], T0 + 30), 60)
        self.assertEqual(freshness_lifetime(200, [expires]), 0)

    def test_duplicate_expires(self):
        """Of two Expires fields the first counts."""
        headers = [
            date(T0),
            (b"Expires", format_http_date(T0 + 10)),
            (b"Expires", format_http_date(T0 + 1000)),
        ]
        self.assertEqual(freshness_lifetime(200, headers), 10)

    def test_heuristic(self):
        """Without explicit expiry, a tenth of the time since Last-Modified is the lifetime."""
        headers = [date(T0), (b"Last-Modified", format_http_date(T0 - 1000))]
        self.assertEqual(freshness_lifetime(200, headers), 100)

    def test_heuristic_cap(self):
        """The heuristic lifetime is at most a day."""
        headers = [date(T0), (b"Last-Modified", format_http_date(T0 - 365 * DAY))]
        self.assertEqual(freshness_lifetime(200, headers), HEURISTIC_CAP)

    def test_heuristic_statuses(self):
        """Heuristics apply to heuristically cacheable statuses, or to public responses."""
        modified = (b"Last-Modified", format_http_date(T0 - 1000))
        self.assertEqual(freshness_lifetime(302, [date(T0), modified]), 0)
        self.assertEqual(freshness_lifetime(302, [date(T0), modified, *cc(b"public")]), 100)
        self.assertEqual(freshness_lifetime(410, [date(T0), modified]), 100)

    def test_no_heuristic_with_expires(self):
        """An explicit Expires, even invalid, rules out heuristics."""
        headers = [date(T0), (b"Expires", b"0"), (b"Last-Modified", format_http_date(T0 - DAY))]
        self.assertEqual(freshness_lifetime(200, headers), 0)

    def test_no_heuristic(self):
        """Without Last-Modified, or with one after Date, there is no freshness."""
        self.assertEqual(freshness_lifetime(200, [date(T0)]), 0)
        headers = [date(T0), (b"Last-Modified", format_http_date(T0 + 1000))]
        self.assertEqual(freshness_lifetime(200, headers), 0)


class CurrentAgeTests(SynchronousTestCase):
    """
    L{current_age} follows RFC 9111 section 4.2.3.
    """

    def test_resident_time(self):
        """A response with Date equal to its arrival ages by the time spent stored."""
        self.assertEqual(current_age(stored([date(T0)]), T0 + 25), 25)

    def test_apparent_age(self):
        """A Date before the arrival adds the apparent age."""
        self.assertEqual(current_age(stored([date(T0 - 10)]), T0 + 5), 15)

    def test_age_and_delay(self):
        """The Age field plus the round trip make the corrected age value."""
        response = stored([date(T0), (b"Age", b"30")], request_time=T0 - 2)
        self.assertEqual(current_age(response, T0 + 5), 37)

    def test_larger_of_both(self):
        """The initial age is the larger of the apparent and corrected ages."""
        response = stored([date(T0 - 100), (b"Age", b"30")])
        self.assertEqual(current_age(response, T0), 100)

    def test_invalid_age(self):
        """An Age that is not a single delta-seconds is ignored."""
        for ages in ([b"abc"], [b"-5"], [b"5, 6"], [b"5", b"6"], [b"1.5"]):
            headers = [date(T0)] + [(b"Age", a) for a in ages]
            self.assertEqual(current_age(stored(headers), T0 + 1), 1, ages)

    def test_huge_age(self):
        """A huge Age counts as 2**31 seconds."""
        response = stored([date(T0), (b"Age", b"123456789012345678901234567890")])
        self.assertEqual(current_age(response, T0), MAX_DELTA)

    def test_invalid_date(self):
        """An invalid or missing Date gives no apparent age."""
        self.assertEqual(current_age(stored([(b"Date", b"0")]), T0 + 3), 3)
        self.assertEqual(current_age(stored([]), T0 + 3), 3)

    def test_clock_skew(self):
        """A Date in the future or a clock stepping back never makes the age negative."""
        self.assertEqual(current_age(stored([date(T0 + 500)]), T0 - 50), 0)


class StoredTests(SynchronousTestCase):
    """
    L{Stored} works out what depends on the response alone once, with the
    same answers as the functions.
    """

    def test_same_as_functions(self):
        """
        Its directives, lifetime and initial age are those the functions
        give.
        """
        headers = [date(T0 - 10), (b"Age", b"4"), (b"Cache-Control", b"max-age=60, must-revalidate")]
        response = stored(headers, request_time=T0 - 2)
        self.assertEqual(response.directives, directives(headers))
        self.assertEqual(response.lifetime, freshness_lifetime(200, headers, T0))
        self.assertEqual(response.initial_age, 10)
        self.assertEqual(current_age(response, T0 + 5), 15)

    def test_worked_out_once(self):
        """
        The lifetime is kept: the headers are not read again.
        """
        headers = fresh_for(60)
        response = stored(headers)
        self.assertEqual(response.lifetime, 60)
        headers[1] = (b"Cache-Control", b"max-age=5")
        self.assertEqual(response.lifetime, 60)


class AssessTests(SynchronousTestCase):
    """
    L{assess} decides whether a stored response answers a request.
    """

    def check(self, request, headers, at, **expected):
        """
        Assess a 200 with C{headers} received at C{T0}, at C{T0 + at}, and
        compare the named attributes of the assessment with C{expected}.
        """
        result = assess(request, stored(headers), T0 + at)
        self.assertIsInstance(result, Assessment)
        self.assertEqual({k: getattr(result, k) for k in expected}, expected)

    def test_fresh(self):
        """A fresh response is usable, with its age, lifetime and ttl."""
        result = assess([], stored(fresh_for(60)), T0 + 10)
        self.assertEqual((result.age, result.lifetime, result.ttl), (10, 60, 50))
        self.assertEqual((result.fresh, result.usable, result.fwd), (True, True, None))

    def test_stale(self):
        """A stale response is not usable and goes upstream as stale."""
        self.check([], fresh_for(60), 60, fresh=False, usable=False, fwd="stale")

    def test_request_no_cache(self):
        """Request no-cache forbids using even a fresh response."""
        self.check(cc(b"no-cache"), fresh_for(60), 1, fresh=True, usable=False, fwd="request")

    def test_pragma(self):
        """Pragma: no-cache acts as no-cache only when the request has no Cache-Control."""
        self.check([(b"Pragma", b"no-cache")], fresh_for(60), 1, usable=False, fwd="request")
        request = [(b"Pragma", b"no-cache"), *cc(b"max-stale=5")]
        self.check(request, fresh_for(60), 1, usable=True)

    def test_response_pragma(self):
        """A response with Pragma: no-cache and no Cache-Control always needs validation."""
        headers = [date(T0), (b"Expires", format_http_date(T0 + 60)), (b"Pragma", b"no-cache")]
        self.check([], headers, 1, fresh=True, usable=False)

    def test_request_no_store(self):
        """Request no-store does not stop an already stored response being used."""
        self.check(cc(b"no-store"), fresh_for(60), 1, usable=True)

    def test_max_age_zero(self):
        """Request max-age=0 always sends the request upstream, even at age 0."""
        self.check(cc(b"max-age=0"), fresh_for(60), 0, usable=False, fwd="request")

    def test_max_age(self):
        """Request max-age accepts a response up to that age and no older."""
        self.check(cc(b"max-age=10"), fresh_for(60), 10, usable=True)
        self.check(cc(b"max-age=10"), fresh_for(60), 11, usable=False, fwd="request")

    def test_invalid_request_max_age(self):
        """An invalid request max-age is ignored."""
        self.check(cc(b"max-age=-3"), fresh_for(60), 30, usable=True)

    def test_min_fresh(self):
        """min-fresh wants that many seconds of freshness left."""
        self.check(cc(b"min-fresh=20"), fresh_for(60), 40, usable=True)
        self.check(cc(b"min-fresh=20"), fresh_for(60), 41, usable=False, fwd="request")

    def test_max_stale_any(self):
        """max-stale without a value accepts any staleness."""
        self.check(cc(b"max-stale"), fresh_for(60), 10_000, fresh=False, usable=True)

    def test_max_stale_limit(self):
        """max-stale=N accepts up to N seconds of staleness."""
        self.check(cc(b"max-stale=30"), fresh_for(60), 90, usable=True)
        self.check(cc(b"max-stale=30"), fresh_for(60), 91, usable=False, fwd="stale")

    def test_max_stale_invalid(self):
        """An invalid max-stale allows no staleness."""
        self.check(cc(b"max-stale=lots"), fresh_for(60), 61, usable=False)

    def test_revalidate_directives(self):
        """must-revalidate, proxy-revalidate and s-maxage forbid stale use despite max-stale."""
        for directive in (b"must-revalidate", b"proxy-revalidate", b"s-maxage=60"):
            headers = fresh_for(60, directive)
            self.check(cc(b"max-stale"), headers, 61, usable=False)
            self.check(cc(b"max-stale"), headers, 59, usable=True)

    def test_response_no_cache(self):
        """A no-cache response is never used unvalidated, even fresh."""
        self.check([], fresh_for(60, b"no-cache"), 1, fresh=True, usable=False, fwd="stale")

    def test_only_if_cached(self):
        """only-if-cached is reported for the proxy to answer 504 when unusable."""
        self.check(cc(b"only-if-cached"), fresh_for(60), 61, only_if_cached=True, usable=False)
        self.check([], fresh_for(60), 1, only_if_cached=False)

    def test_heuristic_assessed(self):
        """A response fresh by heuristics is usable within its heuristic lifetime."""
        headers = [date(T0), (b"Last-Modified", format_http_date(T0 - 1000))]
        self.check([], headers, 99, usable=True, lifetime=100)
        self.check([], headers, 100, usable=False)

    def test_stale_while_revalidate(self):
        """A stale response within its stale-while-revalidate window may be served."""
        headers = fresh_for(60, b"stale-while-revalidate=30")
        self.check([], headers, 90, usable=False, stale_while_revalidate=True)
        self.check([], headers, 91, stale_while_revalidate=False)
        self.check([], headers, 59, usable=True, stale_while_revalidate=False)

    def test_stale_while_revalidate_forbidden(self):
        """must-revalidate, no-cache, and a request's no-cache or max-age=0 rule it out."""
        swr = b"stale-while-revalidate=30"
        self.check([], fresh_for(60, swr, b"must-revalidate"), 70, stale_while_revalidate=False)
        self.check([], fresh_for(60, swr, b"no-cache"), 70, stale_while_revalidate=False)
        self.check(cc(b"no-cache"), fresh_for(60, swr), 70, stale_while_revalidate=False)
        self.check(cc(b"max-age=0"), fresh_for(60, swr), 70, stale_while_revalidate=False)

    def test_stale_if_error_response(self):
        """The response's stale-if-error window, when valid, allows serving it stale on error."""
        headers = fresh_for(60, b"stale-if-error=100")
        self.check([], headers, 160, usable=False, stale_if_error=True)
        self.check([], headers, 161, stale_if_error=False)
        self.check([], fresh_for(60, b"stale-if-error=-1"), 61, stale_if_error=False)

    def test_stale_if_error_request(self):
        """The request's stale-if-error window counts too."""
        self.check(cc(b"stale-if-error=100"), fresh_for(60), 160, stale_if_error=True)
        self.check(cc(b"stale-if-error=100"), fresh_for(60), 161, stale_if_error=False)
        self.check([], fresh_for(60), 61, stale_if_error=False)

    def test_stale_if_error_longer_window(self):
        """Of the request's and response's windows, the longer counts."""
        headers = fresh_for(60, b"stale-if-error=10")
        self.check(cc(b"stale-if-error=100"), headers, 150, stale_if_error=True)

    def test_stale_if_error_forbidden(self):
        """must-revalidate and no-cache responses are never served stale on error."""
        for directive in (b"must-revalidate", b"no-cache", b"proxy-revalidate"):
            headers = fresh_for(60, b"stale-if-error=100", directive)
            self.check([], headers, 70, stale_if_error=False)

    def test_stale_if_error_request_no_cache(self):
        """A client's no-cache rules out stale-if-error unless it sent stale-if-error itself."""
        headers = fresh_for(60, b"stale-if-error=100")
        self.check(cc(b"no-cache"), headers, 70, stale_if_error=False)
        self.check(cc(b"no-cache, stale-if-error=100"), headers, 70, stale_if_error=True)


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
        """Framing and body-describing fields are not updated; validators are."""
        kept = [
            (b"Content-Type", b"text/html"),
            (b"Content-Encoding", b"gzip"),
            (b"Content-Range", b"bytes 0-1/2"),
        ]
        update = [
            (b"Content-Type", b"image/png"),
            (b"content-encoding", b"br"),
            (b"Content-Range", b"bytes 0-9/10"),
            (b"Transfer-Encoding", b"chunked"),
            (b"ETag", b'"v2"'),
        ]
        result = updated_headers(kept + [(b"ETag", b'"v1"')], update)
        self.assertEqual(result, kept + [(b"ETag", b'"v2"')])

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


class CollapsibleTests(SynchronousTestCase):
    """
    L{collapsible}: which misses may wait for another request's fetch.
    """

    def test_plain(self):
        """A plain request, or one with directives a new response satisfies, may wait."""
        self.assertTrue(collapsible([(b"Host", b"h")]))
        self.assertTrue(collapsible(cc(b"max-age=60, max-stale")))

    def test_conditional(self):
        """A conditional request goes upstream itself."""
        for name in (b"If-None-Match", b"if-modified-since", b"If-Match", b"If-Unmodified-Since", b"If-Range"):
            self.assertFalse(collapsible([(name, b'"x"')]), name)

    def test_wants_origin(self):
        """no-cache, Pragma: no-cache and max-age=0 want the origin asked afresh."""
        self.assertFalse(collapsible(cc(b"no-cache")))
        self.assertFalse(collapsible([(b"Pragma", b"no-cache")]))
        self.assertFalse(collapsible(cc(b"max-age=0")))


class ShareableTests(SynchronousTestCase):
    """
    L{shareable}: whether a response being stored may be handed to a
    request that waited for it.
    """

    def test_plain(self):
        self.assertTrue(shareable(fresh_for(60), [], []))

    def test_not_shared(self):
        """Set-Cookie (even public), private and no-cache keep a response to its own request."""
        self.assertFalse(shareable(fresh_for(60, b"public") + [(b"Set-Cookie", b"a=1")], [], []))
        self.assertFalse(shareable(fresh_for(60, b"private"), [], []))
        self.assertFalse(shareable(fresh_for(60, b"no-cache"), [], []))

    def test_vary(self):
        """The Vary fields of both requests must match; Vary: * never does."""
        response = fresh_for(60) + [(b"Vary", b"Accept-Language")]
        english, french = [(b"Accept-Language", b"en")], [(b"Accept-Language", b"fr")]
        self.assertTrue(shareable(response, english, list(english)))
        self.assertFalse(shareable(response, english, french))
        self.assertFalse(shareable(fresh_for(60) + [(b"Vary", b"*")], [], []))

    def test_collapsed_status(self):
        """Cache-Status says a collapsed request was answered with another's response."""
        self.assertEqual(cache_status(hit=True, fwd="uri-miss", collapsed=True),
                         b"netproxy; hit; fwd=uri-miss; collapsed")
