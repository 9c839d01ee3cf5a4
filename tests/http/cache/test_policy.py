"""
Tests for L{netproxy.http.cache.policy}: the shared-cache rules of RFC 9111,
with RFC 5861's stale-while-revalidate and stale-if-error, including the
invalid and edge values origins really send.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.fields import MAX_DELTA, Fields, directives
from netproxy.http.cache.freshness import freshness_lifetime
from netproxy.http.cache.policy import (
    Assessment,
    Stored,
    assess,
    collapsible,
    current_age,
    shareable,
    storable,
)
from netproxy.http.cache.refresh import parse_rule
from tests.cache_helpers import T0, date, format_http_date

DAY = 24 * 60 * 60


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
        """An Age whose first value is not delta-seconds is ignored."""
        for ages in ([b"abc"], [b"-5"], [b""], [b", 5"], [b"7200.0"], [b"1.5, 7200"]):
            headers = [date(T0)] + [(b"Age", a) for a in ages]
            self.assertEqual(current_age(stored(headers), T0 + 1), 1, ages)

    def test_age_list(self):
        """Of an Age list, on one line or several, the first value counts, less any parameters."""
        for ages in ([b"7200, 0"], [b"7200", b"0"], [b"7200;foo=bar"], [b" 7200 ,1"]):
            headers = [date(T0)] + [(b"Age", a) for a in ages]
            self.assertEqual(current_age(stored(headers), T0 + 1), 7201, ages)

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


class RefreshRuleStorableTests(SynchronousTestCase):
    """
    An operator's freshness rule makes responses without validators storable, within the RFC's limits.
    """

    rule = parse_rule(r"\.deb$ 60 20% 1440")

    def test_no_validators(self):
        """A 200 with neither freshness nor validators is stored when a rule with a MIN matches."""
        self.assertTrue(storable(b"GET", [], 200, [date(T0)], self.rule))
        self.assertFalse(storable(b"GET", [], 200, [date(T0)], parse_rule(r"\.deb$ 0 20% 1440")))

    def test_never_overrides(self):
        """no-store, private and no-cache in the response, and no-store in the request, still win."""
        for value in (b"no-store", b"private", b"no-cache"):
            self.assertFalse(storable(b"GET", [], 200, [date(T0), *cc(value)], self.rule), value)
        self.assertFalse(storable(b"GET", cc(b"no-store"), 200, [date(T0)], self.rule))

    def test_heuristic_statuses_only(self):
        """A status RFC 9111 does not let heuristics cache (302, 500) stays unstored."""
        for status in (302, 307, 500, 503):
            self.assertFalse(storable(b"GET", [], status, [date(T0)], self.rule), status)
        self.assertTrue(storable(b"GET", [], 404, [date(T0)], self.rule))

    def test_lifetime(self):
        """A stored response with the rule is fresh for MIN minutes, one with max-age=0 for none."""
        self.assertEqual(Stored(200, [date(T0)], T0, T0, self.rule).lifetime, 3600)
        self.assertEqual(Stored(200, fresh_for(0), T0, T0, self.rule).lifetime, 0)
        self.assertEqual(assess([], Stored(200, [date(T0)], T0, T0, self.rule), T0 + 3599).usable, True)
        self.assertEqual(assess([], Stored(200, [date(T0)], T0, T0, self.rule), T0 + 3600).usable, False)


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
        """A fresh response without cookies or Vary may be shared."""
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


class AssessShortcutTests(SynchronousTestCase):
    """
    L{assess} answers a request without directives for a fresh response
    by a shortcut, which must agree with working through every directive.
    """

    RESPONSES = [
        b"max-age=60", b"max-age=60, stale-if-error=30", b"max-age=60, must-revalidate, stale-if-error=30",
        b"max-age=60, proxy-revalidate, stale-if-error=30", b"s-maxage=60, stale-if-error=30",
        b"max-age=60, no-cache", b"max-age=60, stale-if-error=bad", b"max-age=60, stale-while-revalidate=30",
        b"max-age=0, stale-if-error=30", b"public",
    ]

    def test_same_answer(self):
        """A directive the cache does not know forces the long way: both give the same assessment."""
        for value in self.RESPONSES:
            for seconds in (0, 30, 59, 60, 90):
                response = stored([date(T0), (b"Cache-Control", value)])
                self.assertEqual(assess([], response, T0 + seconds),
                                 assess(cc(b"x-unknown-directive"), response, T0 + seconds), (value, seconds))


class FieldsArgumentTests(SynchronousTestCase):
    """
    The rules take a message's L{Fields} where they take its header list,
    with the same answers, so that each message is read once.
    """

    REQUESTS = [
        [],
        [(b"Host", b"h"), (b"Authorization", b"Basic x")],
        cc(b"no-store"),
        cc(b"no-cache"),
        [(b"Pragma", b"no-cache")],
        cc(b"max-age=0"),
        [(b"If-None-Match", b'"v1"')],
        cc(b"max-stale, only-if-cached"),
    ]
    RESPONSES = [
        fresh_for(60),
        fresh_for(60, b"public") + [(b"Set-Cookie", b"a=1")],
        fresh_for(60, b"private"),
        fresh_for(60, b"must-understand, no-store"),
        fresh_for(60) + [(b"Vary", b"Accept, *")],
        [date(T0), (b"ETag", b'"v1"')],
        [date(T0), (b"Expires", format_http_date(T0 + 60))],
        [date(T0), (b"Last-Modified", format_http_date(T0 - DAY))],
        [(b"Cache-Control", b"no-store")],
        [],
    ]

    def test_storable(self):
        """storable gives the same answer for fields as for their lists, for every status."""
        for request in self.REQUESTS:
            for response in self.RESPONSES:
                request_fields, response_fields = Fields(request), Fields(response)
                for status in (200, 203, 206, 302, 304, 404, 500):
                    expected = storable(b"GET", request, status, response)
                    self.assertEqual(storable(b"GET", request_fields, status, response_fields), expected,
                                     (request, status, response))

    def test_collapsible(self):
        """collapsible gives the same answer for fields as for their lists."""
        for request in self.REQUESTS:
            self.assertEqual(collapsible(Fields(request)), collapsible(request), request)

    def test_assess(self):
        """assess gives the same assessment for fields as for their lists."""
        for request in self.REQUESTS:
            for response in self.RESPONSES:
                kept = stored(response)
                self.assertEqual(assess(Fields(request), kept, T0 + 30), assess(request, kept, T0 + 30))

    def test_shareable(self):
        """shareable gives the same answer for fields as for their lists."""
        for request in self.REQUESTS:
            for response in self.RESPONSES:
                self.assertEqual(shareable(Fields(response), Fields(request), Fields([])),
                                 shareable(response, request, []), (request, response))

    def test_stored_fields(self):
        """A stored response's fields are read once, and its directives are theirs."""
        kept = stored(fresh_for(60, b"public"))
        self.assertIs(kept.fields, kept.fields)
        self.assertEqual(kept.fields.headers, kept.headers)
        self.assertIs(kept.directives, kept.fields.directives)
