"""
Tests for L{netproxy.http.parents}: reading C{--parent}, the rendezvous
choice of a parent per URL (stable, and moving only a lost parent's share),
the back-off of a failed parent, the checks of a destination the proxy does
not resolve, and the request line for a parent.
"""

from base64 import b64decode

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import RuleSet, parse_rule
from netproxy.http.message import parse_target
from netproxy.http.parents import Parent, Parents, absolute_form, parse_parent, refusal, url_key
from netproxy.this_host import LocalDestinations

URLS = [b"http://example.com/%d" % (number,) for number in range(3000)]


def parents(*names, clock=None, direct=()):
    """
    :returns: L{Parents} for C{host:port} C{names}, on C{clock}.
    """
    return Parents([parse_parent(f"http://{name}") for name in names], RuleSet([parse_rule(rule) for rule in direct]),
                   clock or Clock())


def choices(chooser):
    """
    :returns: the name of the parent each of L{URLS} goes to first.
    """
    return [chooser.candidates(url)[0].name for url in URLS]


class ParseTests(SynchronousTestCase):
    """
    L{parse_parent} reads C{http://[user:password@]host:port} strictly.
    """

    def test_plain(self):
        """A host and port, scheme and host in any case, a final slash allowed."""
        parent = parse_parent("HTTP://Proxy.Example.COM:3128/")
        self.assertEqual((parent.host, parent.port, parent.authorization, parent.name),
                         ("proxy.example.com", 3128, None, "proxy.example.com:3128"))

    def test_credentials(self):
        """Percent-encoded credentials are decoded into the Basic credentials sent to the parent."""
        parent = parse_parent("http://us%40er:p%3Ass%25w:rd@10.0.0.1:8080")
        scheme, _, token = parent.authorization.partition(b" ")
        self.assertEqual((scheme, b64decode(token)), (b"Basic", b"us@er:p:ss%w:rd"))

    def test_empty_password(self):
        """An empty password is a password."""
        self.assertEqual(b64decode(parse_parent("http://user:@h:1").authorization[6:]), b"user:")

    def test_utf8_credentials(self):
        """Credentials are UTF-8 once decoded, and sent as such."""
        parent = parse_parent("http://j%C3%B6rg:pw@h:1")
        self.assertEqual(b64decode(parent.authorization[6:]), "jörg:pw".encode("utf-8"))

    def test_ipv6(self):
        """An IPv6 parent is written in brackets, and kept without them, in its canonical form."""
        parent = parse_parent("http://[0:0::1]:3128")
        self.assertEqual((parent.host, parent.name), ("::1", "[::1]:3128"))

    def test_socks5(self):
        """A socks5:// (or socks5h://) parent keeps its login for RFC 1929, and its name says socks5://."""
        parent = parse_parent("socks5://us%3Aer:p%40ss@10.0.0.1:1080")
        self.assertEqual((parent.socks, parent.login, parent.authorization), (True, (b"us:er", b"p@ss"), None))
        self.assertEqual(parent.name, "socks5://10.0.0.1:1080")
        self.assertNotIn("p@ss", repr(parent))
        self.assertEqual(parse_parent("SOCKS5H://[::1]:1080/").name, "socks5://[::1]:1080")
        self.assertIsNone(parse_parent("socks5://h:1").login)

    def test_socks5_pool_key(self):
        """A SOCKS5 parent's connections are pooled per origin, an HTTP parent's for any origin."""
        socks, http = parse_parent("socks5://h:1080"), parse_parent("http://h:1080")
        self.assertEqual(socks.pool_key(("a", 80)), socks.pool_key(("a", 80)))
        self.assertNotEqual(socks.pool_key(("a", 80)), socks.pool_key(("b", 80)))
        self.assertNotEqual(socks.pool_key(("a", 80)), ("a", 80))
        self.assertEqual(http.pool_key(("a", 80)), http.pool_key(("b", 80)))

    def test_credentials_not_shown(self):
        """A parent's repr (which may reach a log) does not show its credentials."""
        self.assertNotIn("Basic", repr(parse_parent("http://u:secret@h:1")))

    def test_bad(self):
        """Each malformed value is refused, saying what is wrong, never quoting the password."""
        cases = {
            "proxy:3128": "expected http://",
            "https://proxy:3128": "only http://",
            "socks4://proxy:1080": "only http:// and socks5://",
            "socks5://user:@proxy:1080": "1 to 255 bytes",
            "socks5://user:%s@proxy:1080" % ("x" * 256): "1 to 255 bytes",
            "http://proxy": "port",
            "http://proxy:": "port",
            "http://proxy:0": "port",
            "http://proxy:65536": "port",
            "http://proxy:31x": "port",
            "http://proxy:3128/path": "no path",
            "http://proxy:3128?q": "no path",
            "http://proxy:3128#f": "no path",
            "http://user@proxy:3128": "user:password",
            "http://user:pa@ss@proxy:3128": "%40",
            "http://user:50%@proxy:3128": "escape",
            "http://:secret@proxy:3128": "user name is empty",
            "http://us%3Aer:secret@proxy:3128": "must not contain ':'",
            "http://user:%0Asecret@proxy:3128": "control characters",
            "http://user:%FFsecret@proxy:3128": "UTF-8",
            "http://[::1:3128": "bad host",
            "http://[zz::1]:3128": "bad IPv6",
            "http://::1:3128": "bad host",
            "http://pro xy:3128": "bad host",
            "http://-proxy:3128": "bad host",
            "http://:3128": "bad host",
        }
        for text, expected in cases.items():
            with self.assertRaises(ValueError, msg=text) as raised:
                parse_parent(text)
            self.assertIn(expected, str(raised.exception), text)
            self.assertNotIn("secret", str(raised.exception))


class RendezvousTests(SynchronousTestCase):
    """
    Each URL goes to the parent with the highest hash score for it.
    """

    def test_same_everywhere(self):
        """Two proxies with the same parents, listed in another order, send every URL to the same parent."""
        self.assertEqual(choices(parents("a:1", "b:1", "c:1")), choices(parents("c:1", "a:1", "b:1")))

    def test_spread(self):
        """Three parents each get a fair share of 3000 URLs (each between a quarter and two fifths)."""
        chosen = choices(parents("a:1", "b:1", "c:1"))
        for name in ("a:1", "b:1", "c:1"):
            self.assertTrue(750 < chosen.count(name) < 1200, (name, chosen.count(name)))

    def test_losing_one_moves_only_its_share(self):
        """Without parent c, the URLs of a and b keep their parent; c's are spread over a and b."""
        before = choices(parents("a:1", "b:1", "c:1"))
        after = choices(parents("a:1", "b:1"))
        moved = [(old, new) for old, new in zip(before, after) if old != new]
        self.assertEqual({old for old, _ in moved}, {"c:1"})
        self.assertEqual(len(moved), before.count("c:1"))
        self.assertEqual({new for _, new in moved}, {"a:1", "b:1"})

    def test_adding_one_takes_only_its_share(self):
        """A fourth parent takes URLs from each of the others, and no URL moves between the old ones."""
        before = choices(parents("a:1", "b:1", "c:1"))
        after = choices(parents("a:1", "b:1", "c:1", "d:1"))
        self.assertEqual({new for old, new in zip(before, after) if old != new}, {"d:1"})

    def test_second_choice_is_where_a_down_parent_s_urls_go(self):
        """While a parent is down its URLs go to their second choice, the parent they would have without it."""
        clock = Clock()
        three = parents("a:1", "b:1", "c:1", clock=clock)
        down = three.parents[2]
        three.failed(down, "connection refused")
        self.assertEqual(choices(three), choices(parents("a:1", "b:1")))
        clock.advance(1)
        self.assertEqual(choices(three), choices(parents("a:1", "b:1", "c:1")))

    def test_url_key(self):
        """A request is placed by its whole URL, a CONNECT by its host:port."""
        self.assertEqual(url_key(parse_target(b"GET", b"http://Example.com:80/a?b")), b"http://example.com/a?b")
        self.assertEqual(url_key(parse_target(b"CONNECT", b"example.com:443")), b"example.com:443")


class BackOffTests(SynchronousTestCase):
    """
    A failed parent is passed over for the others, with the back-off of
    L{netproxy.backoff}, and stays as a last resort.
    """

    def setUp(self):
        self.clock = Clock()
        self.parents = parents("a:1", "b:1", clock=self.clock)
        self.a, self.b = self.parents.parents
        self.url = next(url for url in URLS if self.parents.candidates(url)[0] is self.a)
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_down_goes_last(self):
        """A parent that failed is tried after the others, for one second, then first again."""
        self.parents.failed(self.a, "connection refused")
        self.assertEqual(self.parents.candidates(self.url), [self.b, self.a])
        self.clock.advance(0.9)
        self.assertEqual(self.parents.candidates(self.url), [self.b, self.a])
        self.clock.advance(0.1)
        self.assertEqual(self.parents.candidates(self.url), [self.a, self.b])

    def test_waits_double(self):
        """Each failure in a row doubles the wait: after three, the parent waits four seconds."""
        for _ in range(3):
            self.parents.failed(self.a, "connection refused")
        self.clock.advance(3.9)
        self.assertEqual(self.parents.candidates(self.url)[0], self.b)
        self.clock.advance(0.1)
        self.assertEqual(self.parents.candidates(self.url)[0], self.a)

    def test_answer_brings_back(self):
        """A parent that accepts a connection is up again at once, and that is logged."""
        self.parents.failed(self.a, "connection refused")
        self.parents.answered(self.a)
        self.assertEqual(self.parents.candidates(self.url)[0], self.a)
        self.assertEqual([event["log_level"] for event in self.events], [LogLevel.error, LogLevel.info])
        self.assertIn("answers again", self.events[-1]["log_format"])

    def test_all_down_soonest_first(self):
        """With every parent down, all are still tried, the one due soonest first."""
        self.parents.failed(self.a, "connection refused")
        self.parents.failed(self.a, "connection refused")
        self.parents.failed(self.b, "connection refused")
        self.assertEqual(self.parents.candidates(self.url), [self.b, self.a])

    def test_failure_logged(self):
        """A failure is logged as an error naming the parent, the reason and the wait."""
        self.parents.failed(self.a, "connection refused")
        [event] = self.events
        self.assertEqual((event["log_level"], event["parent"], event["reason"], event["wait"]),
                         (LogLevel.error, "a:1", "connection refused", 1))

    def test_last_resort_not_logged(self):
        """A parent failing again while it waits (tried as a last resort) is not logged again, but waits longer."""
        self.parents.failed(self.a, "connection refused")
        self.parents.failed(self.a, "connection refused")
        self.assertEqual(len(self.events), 1)
        self.assertEqual(self.a.state.retry_at, 2)
        self.clock.advance(2)
        self.parents.failed(self.a, "timed out")
        self.assertEqual((len(self.events), self.events[-1]["wait"]), (2, 4))

    def test_no_parents(self):
        """Parents need at least one parent."""
        self.assertRaises(ValueError, Parents, [], RuleSet(), self.clock)


class DestinationTests(SynchronousTestCase):
    """
    Through a parent, destinations are checked as written: the proxy does
    not resolve their names.
    """

    def setUp(self):
        self.local = LocalDestinations(lambda: [])
        self.rules = RuleSet([parse_rule("10.0.0.0/8"), parse_rule("*.blocked.example")])

    def refused(self, url, local=True):
        error = refusal(self.rules, self.local if local else None, parse_target(b"GET", url))
        return None if error is None else (error.status, str(error))

    def test_direct(self):
        """--direct rules say which destinations bypass the parents, by name as written or by address."""
        chooser = parents("a:1", direct=["*.internal", "192.168.0.0/16", "*:8080"])
        self.assertEqual([chooser.goes_direct(host, port) for host, port in
                          [("x.internal", 80), ("internal", 80), ("192.168.1.1", 80), ("example.com", 8080),
                           ("example.com", 80)]], [True, False, True, True, False])

    def test_address_blocked(self):
        """An address in the URL is matched against --block in every spelling."""
        status, text = self.refused(b"http://10.1.2.3/")
        self.assertEqual(status, 403)
        self.assertIn("blocked by rule 10.0.0.0/8", text)
        self.assertEqual(self.refused(b"http://012.1.2.3/")[0], 403)

    def test_local_address(self):
        """A local address in the URL is refused, unless local destinations are allowed."""
        for url in (b"http://127.0.0.1/", b"http://[::1]/", b"http://0.0.0.0/", b"http://169.254.169.254/",
                    b"http://2130706433/"):
            status, text = self.refused(url)
            self.assertEqual(status, 403, url)
            self.assertIn("--allow-local", text)
            self.assertIsNone(self.refused(url, local=False))

    def test_localhost_names(self):
        """The names localhost and *.localhost are refused as loopback without being resolved."""
        for url in (b"http://localhost/", b"http://LOCALHOST./", b"http://app.localhost:8080/"):
            status, text = self.refused(url)
            self.assertEqual(status, 403, url)
            self.assertIn("loopback name", text)
            self.assertIsNone(self.refused(url, local=False))

    def test_names_not_resolved(self):
        """Any other name goes to the parent unresolved (its rules are matched by the exchange)."""
        self.assertIsNone(self.refused(b"http://example.com/"))
        self.assertIsNone(self.refused(b"http://localhost.example.com/"))


class AbsoluteFormTests(SynchronousTestCase):
    """
    L{absolute_form} rewrites an origin-form head for a parent.
    """

    HEAD = b"GET /a?b HTTP/1.1\r\nHost: example.com:8080\r\nVia: 1.1 netproxy\r\n\r\n"

    def test_plain(self):
        """The request line names the whole URL; the rest is unchanged."""
        target = parse_target(b"GET", b"http://example.com:8080/a?b")
        self.assertEqual(absolute_form(self.HEAD, target, parse_parent("http://p:1")),
                         b"GET http://example.com:8080/a?b HTTP/1.1\r\nHost: example.com:8080\r\n"
                         b"Via: 1.1 netproxy\r\n\r\n")

    def test_credentials(self):
        """The parent's credentials follow the request line."""
        target = parse_target(b"GET", b"http://example.com:8080/a?b")
        head = absolute_form(self.HEAD, target, parse_parent("http://u:p@p:1"))
        self.assertEqual(head.split(b"\r\n")[:2], [b"GET http://example.com:8080/a?b HTTP/1.1",
                                                  b"Proxy-Authorization: Basic dTpw"])

    def test_options_asterisk(self):
        """OPTIONS * for the origin is OPTIONS http://authority for the parent."""
        target = parse_target(b"OPTIONS", b"http://[::1]")
        head = absolute_form(b"OPTIONS * HTTP/1.1\r\nHost: [::1]\r\n\r\n", target, parse_parent("http://p:1"))
        self.assertEqual(head, b"OPTIONS http://[::1] HTTP/1.1\r\nHost: [::1]\r\n\r\n")


class ParentTests(SynchronousTestCase):
    """
    L{Parent} keys and names.
    """

    def test_pool_key_apart(self):
        """A parent's pool key differs from an origin's at the same address."""
        self.assertNotEqual(Parent("10.0.0.1", 80).key, ("10.0.0.1", 80))
