"""
Tests for L{netproxy.http.cache.freshness}: how long a response stays fresh
and how old it arrived, including the invalid and edge values origins really
send.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.fields import MAX_DELTA
from netproxy.http.cache.freshness import HEURISTIC_CAP, freshness_lifetime, initial_age
from netproxy.http.cache.refresh import parse_rule
from tests.cache_helpers import T0, date, format_http_date

DAY = 24 * 60 * 60


def cc(value):
    """
    :returns: a header list with one Cache-Control field.
    """
    return [(b"Cache-Control", value)]


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


class InitialAgeTests(SynchronousTestCase):
    """
    L{initial_age} is the corrected initial age of RFC 9111 section 4.2.3.
    """

    def test_same_date(self):
        """A response dated when it arrived, without Age, arrives new."""
        self.assertEqual(initial_age([date(T0)], T0, T0), 0)

    def test_apparent_age(self):
        """A Date before the arrival gives the apparent age."""
        self.assertEqual(initial_age([date(T0 - 10)], T0, T0), 10)

    def test_age_and_delay(self):
        """The Age field plus the request's round trip make the corrected age value."""
        self.assertEqual(initial_age([date(T0), (b"Age", b"30")], T0 - 2, T0), 32)

    def test_larger_of_both(self):
        """The initial age is the larger of the apparent and corrected ages."""
        self.assertEqual(initial_age([date(T0 - 100), (b"Age", b"30")], T0, T0), 100)
        self.assertEqual(initial_age([date(T0 - 10), (b"Age", b"30")], T0, T0), 30)

    def test_age_list(self):
        """Of an Age list the first value counts, less any parameters; an invalid one is ignored."""
        self.assertEqual(initial_age([date(T0), (b"Age", b"7200;foo=bar, 0")], T0, T0), 7200)
        self.assertEqual(initial_age([date(T0), (b"Age", b"abc")], T0, T0), 0)

    def test_invalid_date(self):
        """An invalid or missing Date counts as the response time: no apparent age."""
        self.assertEqual(initial_age([(b"Date", b"0")], T0 - 3, T0), 3)
        self.assertEqual(initial_age([], T0, T0), 0)

    def test_future_date(self):
        """A Date after the arrival never makes the age negative."""
        self.assertEqual(initial_age([date(T0 + 500)], T0, T0), 0)


class RefreshRuleLifetimeTests(SynchronousTestCase):
    """
    An operator's rule replaces the heuristic, never explicit freshness.
    """

    rule = parse_rule(". 60 50% 120")

    def test_replaces_heuristic(self):
        """With Last-Modified, PERCENT of its age up to MAX; without, MIN."""
        modified = (b"Last-Modified", format_http_date(T0 - 1000))
        self.assertEqual(freshness_lifetime(200, [date(T0), modified], rule=self.rule), 500)
        self.assertEqual(freshness_lifetime(200, [date(T0)], rule=self.rule), 3600)
        self.assertEqual(freshness_lifetime(200, [], T0, rule=self.rule), 3600)

    def test_explicit_wins(self):
        """max-age, s-maxage and Expires, even invalid or zero ones, are not overridden."""
        for headers in ([date(T0), *cc(b"max-age=0")], [date(T0), *cc(b"s-maxage=5")],
                        [date(T0), (b"Expires", b"0")], [date(T0), (b"Expires", format_http_date(T0 + 7))],
                        [date(T0), *cc(b"max-age=bad")]):
            self.assertEqual(freshness_lifetime(200, headers, rule=self.rule),
                             freshness_lifetime(200, headers), headers)

    def test_status(self):
        """Statuses that are not heuristically cacheable get nothing from a rule, unless public."""
        self.assertEqual(freshness_lifetime(302, [date(T0)], rule=self.rule), 0)
        self.assertEqual(freshness_lifetime(302, [date(T0), *cc(b"public")], rule=self.rule), 3600)
