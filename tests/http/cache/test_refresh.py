"""
Tests for L{netproxy.http.cache.refresh}: the operator's freshness rules,
read as Squid reads C{refresh_pattern}, and the URL they are matched with.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.fields import MAX_DELTA
from netproxy.http.cache.refresh import matching_rule, parse_rule, rule_url
from tests.cache_helpers import T0

DAY = 24 * 60 * 60


class ParseRuleTests(SynchronousTestCase):
    """
    L{parse_rule} reads C{[-i] REGEX MIN PERCENT MAX} and refuses anything else with a reason.
    """

    def test_numbers(self):
        """MIN and MAX are minutes, PERCENT a percentage with or without its sign."""
        rule = parse_rule(r"/pool/.*\.deb$ 129600 100% 129600")
        self.assertEqual((rule.minimum, rule.fraction, rule.maximum), (90 * DAY, 1.0, 90 * DAY))
        self.assertEqual(parse_rule("x 0 20 60").fraction, 0.2)
        self.assertEqual(parse_rule("x 0 12.5% 60").fraction, 0.125)

    def test_case(self):
        """The expression is case-sensitive, unless -i comes first."""
        self.assertIsNone(parse_rule(r"\.whl$ 1 0% 1").pattern.search("http://h/A.WHL"))
        self.assertIsNotNone(parse_rule(r"-i \.whl$ 1 0% 1").pattern.search("http://h/A.WHL"))

    def test_bad_regex(self):
        """An expression that does not compile is named."""
        error = self.assertRaises(ValueError, parse_rule, "(deb 1 20% 2")
        self.assertIn("bad regular expression '(deb'", str(error))

    def test_wrong_count(self):
        """Fewer or more than four words (Squid's options among them) are refused."""
        for text in ["", "x", "x 1 20%", "x 1 20% 2 override-expire", "-i", "-i x 1 2"]:
            error = self.assertRaises(ValueError, parse_rule, text)
            self.assertIn("expected 'REGEX MIN PERCENT MAX'", str(error), text)

    def test_bad_numbers(self):
        """Negative, fractional, non-numeric or huge minutes and malformed percentages are refused."""
        for text, word in [("x -1 20% 2", "MIN"), ("x 1.5 20% 2", "MIN"), ("x 1 20% lots", "MAX"),
                           ("x 1 20% 99999999999999999999", "MAX"), ("x 1 -20% 2", "PERCENT"),
                           ("x 1 20%% 2", "PERCENT"), ("x 1 nan 2", "PERCENT"), ("x 1 1e3 2", "PERCENT")]:
            error = self.assertRaises(ValueError, parse_rule, text)
            self.assertTrue(str(error).startswith(word), (text, str(error)))

    def test_largest(self):
        """MAX may be as long as the longest delta-seconds, and no longer."""
        self.assertEqual(parse_rule(f"x 0 0 {MAX_DELTA // 60}").maximum, MAX_DELTA // 60 * 60)
        self.assertRaises(ValueError, parse_rule, f"x 0 0 {MAX_DELTA // 60 + 1}")

    def test_min_above_max(self):
        """MIN above MAX is refused: it could only be a mistake."""
        error = self.assertRaises(ValueError, parse_rule, "x 10 20% 5")
        self.assertIn("MIN (10) is more than MAX (5)", str(error))


class LifetimeTests(SynchronousTestCase):
    """
    L{RefreshRule.lifetime} gives Squid's heuristic freshness.
    """

    def test_percent_of_last_modified(self):
        """With Last-Modified before Date: PERCENT of the time between, however short MIN is."""
        rule = parse_rule("x 60 50% 1440")
        self.assertEqual(rule.lifetime(T0, T0 - 600), 300)

    def test_capped_by_max(self):
        """The percentage never exceeds MAX."""
        rule = parse_rule("x 0 50% 10")
        self.assertEqual(rule.lifetime(T0, T0 - 30 * DAY), 600)

    def test_min_without_last_modified(self):
        """Without Last-Modified, or with one not before Date, MIN."""
        rule = parse_rule("x 60 50% 1440")
        self.assertEqual(rule.lifetime(T0, None), 3600)
        self.assertEqual(rule.lifetime(T0, T0 + 10), 3600)
        self.assertEqual(rule.lifetime(None, T0), 3600)


class MatchingTests(SynchronousTestCase):
    """
    Rules are matched against the URL as clients write it, the first match winning.
    """

    def test_first_match(self):
        """The first rule whose expression is found in the URL counts."""
        rules = [parse_rule(r"\.deb$ 1 0% 1"), parse_rule(r"/pool/ 2 0% 2"), parse_rule(". 3 0% 3")]
        self.assertIs(matching_rule(rules, "http://h/pool/a.deb"), rules[0])
        self.assertIs(matching_rule(rules, "http://h/pool/a.dsc"), rules[1])
        self.assertIs(matching_rule(rules, "http://h/index.html"), rules[2])
        self.assertIsNone(matching_rule(rules[:2], "http://h/index.html"))

    def test_rule_url(self):
        """The port is written only when it is not 80; an IPv6 host goes in brackets."""
        self.assertEqual(rule_url(b"http://deb.debian.org:80/debian/pool/a.deb"),
                         "http://deb.debian.org/debian/pool/a.deb")
        self.assertEqual(rule_url(b"http://127.0.0.1:8099/x?y=1"), "http://127.0.0.1:8099/x?y=1")
        self.assertEqual(rule_url(b"http://::1:80/x"), "http://[::1]/x")
        self.assertEqual(rule_url(b"http://::1:8080/x"), "http://[::1]:8080/x")

    def test_anchored_host(self):
        """A rule anchored on a host matches its URLs however the cache key spells the port."""
        rule = parse_rule(r"^http://deb\.debian\.org/ 1 0% 1")
        self.assertIs(matching_rule([rule], rule_url(b"http://deb.debian.org:80/debian/x")), rule)
        self.assertIsNone(matching_rule([rule], rule_url(b"http://deb.debian.org:8080/debian/x")))
