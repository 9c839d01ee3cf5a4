"""
Tests for L{netproxy.acl}: the rule syntax shared by the relay's and the HTTP
proxy's blocklists and allow-lists, and rule sets.
"""

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.acl import Rule, RuleSet, host_address, parse_rule
from netproxy.errors import RuleError
from tests.address_helpers import NAMES, THIS_HOST, unbracketed


class RuleTestMixin:
    """
    Assertions about what one rule matches.
    """

    def assertMatches(self, text, host, port=None):
        rule = parse_rule(text)
        self.assertIs(RuleSet([rule]).match(host, port), rule, f"{text!r} should match {host!r} port {port}")

    def assertNotMatches(self, text, host, port=None):
        rule = parse_rule(text)
        self.assertIsNone(RuleSet([rule]).match(host, port), f"{text!r} should not match {host!r} port {port}")


class AddressRuleTests(RuleTestMixin, SynchronousTestCase):
    """
    Rules naming addresses and networks.
    """

    def test_ipv4_address(self):
        """An IPv4 address rule matches that address on any port and no other address."""
        self.assertEqual(str(parse_rule("10.0.0.1")), "10.0.0.1")
        self.assertMatches("10.0.0.1", "10.0.0.1")
        self.assertMatches("10.0.0.1", "10.0.0.1", 80)
        self.assertNotMatches("10.0.0.1", "10.0.0.2", 80)

    def test_ipv4_network(self):
        """An IPv4 network rule matches the addresses inside it only."""
        self.assertEqual(str(parse_rule("10.0.0.0/8")), "10.0.0.0/8")
        self.assertMatches("10.0.0.0/8", "10.255.1.2", 22)
        self.assertMatches("10.0.0.0/8", "10.0.0.0")
        self.assertNotMatches("10.0.0.0/8", "11.0.0.1")

    def test_network_host_bits(self):
        """A network written with host bits set is the network containing it."""
        self.assertEqual(str(parse_rule("10.1.2.3/8")), "10.0.0.0/8")
        self.assertEqual(parse_rule("10.0.0.1/32"), parse_rule("10.0.0.1"))

    def test_ipv6_address(self):
        """Bare and bracketed IPv6 addresses are address rules with no port."""
        self.assertEqual(parse_rule("::1"), parse_rule("[::1]"))
        self.assertEqual(str(parse_rule("[::1]")), "::1")
        self.assertMatches("::1", "::1", 443)
        self.assertMatches("::1", "[::1]", 443)
        self.assertMatches("[::1]", "0:0:0:0:0:0:0:1")
        self.assertNotMatches("::1", "::2")

    def test_bare_ipv6_is_never_a_port(self):
        """Text that parses whole as an IPv6 address is an address, not address:port."""
        rule = parse_rule("2001:db8::1:80")
        self.assertIsNone(rule.port)
        self.assertMatches("2001:db8::1:80", "2001:db8::1:80", 443)
        self.assertNotMatches("2001:db8::1:80", "2001:db8::1", 80)

    def test_ipv6_network(self):
        """IPv6 networks parse bare or bracketed and match addresses inside."""
        self.assertEqual(parse_rule("2001:db8::/32"), parse_rule("[2001:db8::]/32"))
        self.assertEqual(str(parse_rule("[2001:db8::]/32")), "2001:db8::/32")
        self.assertMatches("2001:db8::/32", "2001:db8:ffff::1")
        self.assertMatches("2001:db8::/32", "[2001:DB8::5]", 80)
        self.assertNotMatches("2001:db8::/32", "2001:db9::1")

    def test_mapped_host_matches_ipv4_rules(self):
        """An IPv4-mapped IPv6 host matches the rules for its IPv4 address."""
        self.assertMatches("127.0.0.1", "::ffff:127.0.0.1")
        self.assertMatches("127.0.0.0/8", "[::ffff:127.0.0.2]", 80)
        self.assertMatches("127.0.0.1:7777", "::ffff:7f00:1", 7777)
        self.assertNotMatches("127.0.0.1", "::ffff:127.0.0.2")

    def test_mapped_rule_is_ipv4(self):
        """An IPv4-mapped IPv6 rule is stored and matched as the IPv4 rule."""
        self.assertEqual(parse_rule("::ffff:127.0.0.1"), parse_rule("127.0.0.1"))
        self.assertEqual(str(parse_rule("::ffff:10.0.0.0/104")), "10.0.0.0/8")
        self.assertMatches("[::ffff:10.0.0.0]/104:22", "10.9.9.9", 22)

    def test_families_apart(self):
        """IPv6 rules never match IPv4 hosts and IPv4 rules never match IPv6 hosts."""
        self.assertNotMatches("::/0", "10.0.0.1")
        self.assertNotMatches("0.0.0.0/0", "::1")
        self.assertNotMatches("::1", "127.0.0.1")

    def test_zone_index_ignored_on_hosts(self):
        """A host's IPv6 zone index does not stop it matching."""
        self.assertMatches("fe80::/10", "fe80::1%eth0")

    def test_numeric_host_forms(self):
        """Hosts getaddrinfo reads as IPv4 (127.1, 2130706433, hex, octal) match address rules."""
        for host in ["127.1", "2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.0.0.1."]:
            self.assertMatches("127.0.0.1", host)
        self.assertNotMatches("127.0.0.1", "127.2")

    def test_address_rules_ignore_names(self):
        """Address rules do not match host names: the caller resolves and asks again."""
        self.assertNotMatches("127.0.0.1", "localhost")
        self.assertNotMatches("0.0.0.0/0", "example.com")
        self.assertNotMatches("::/0", "example.com")


class PortRuleTests(RuleTestMixin, SynchronousTestCase):
    """
    Rules with a port.
    """

    def test_port_on_any_host(self):
        """``*:7777`` and ``:7777`` match every host on port 7777 only."""
        self.assertEqual(parse_rule("*:7777"), parse_rule(":7777"))
        self.assertEqual(str(parse_rule(":7777")), "*:7777")
        for host in ["10.0.0.1", "::1", "[::1]", "example.com"]:
            self.assertMatches("*:7777", host, 7777)
            self.assertNotMatches("*:7777", host, 7778)
            self.assertNotMatches("*:7777", host, None)

    def test_ipv4_address_and_port(self):
        """``127.0.0.1:7777`` matches that address on that port only."""
        self.assertMatches("127.0.0.1:7777", "127.0.0.1", 7777)
        self.assertNotMatches("127.0.0.1:7777", "127.0.0.1", 7778)
        self.assertNotMatches("127.0.0.1:7777", "127.0.0.1")
        self.assertNotMatches("127.0.0.1:7777", "127.0.0.2", 7777)

    def test_ipv6_address_and_port(self):
        """``[::1]:443`` matches that IPv6 address on that port only."""
        rule = parse_rule("[::1]:443")
        self.assertEqual((str(rule), rule.port), ("[::1]:443", 443))
        self.assertMatches("[::1]:443", "::1", 443)
        self.assertNotMatches("[::1]:443", "::1", 80)

    def test_network_and_port(self):
        """A network with a port matches addresses inside on that port."""
        self.assertMatches("10.0.0.0/8:22", "10.1.1.1", 22)
        self.assertNotMatches("10.0.0.0/8:22", "10.1.1.1", 23)
        self.assertEqual(str(parse_rule("[2001:db8::]/32:22")), "[2001:db8::]/32:22")
        self.assertMatches("[2001:db8::]/32:22", "2001:db8::7", 22)
        self.assertNotMatches("[2001:db8::]/32:22", "2001:db8::7", 21)

    def test_name_and_port(self):
        """Names and wildcard names take a port."""
        self.assertMatches("example.com:80", "EXAMPLE.com", 80)
        self.assertNotMatches("example.com:80", "example.com", 443)
        self.assertMatches("*.example.com:443", "www.example.com", 443)
        self.assertNotMatches("*.example.com:443", "www.example.com", 80)

    def test_port_bounds(self):
        """Ports 1 and 65535 are valid and leading zeros are dropped."""
        self.assertEqual(parse_rule("*:1").port, 1)
        self.assertEqual(parse_rule("*:65535").port, 65535)
        self.assertEqual(str(parse_rule("*:080")), "*:80")


class NameRuleTests(RuleTestMixin, SynchronousTestCase):
    """
    Rules naming hosts.
    """

    def test_exact_name(self):
        """A name matches itself in any case, with or without a trailing dot."""
        for host in ["example.com", "EXAMPLE.COM", "Example.Com.", "example.com."]:
            self.assertMatches("example.com", host, 80)
        self.assertEqual(parse_rule("Example.COM."), parse_rule("example.com"))
        self.assertEqual(str(parse_rule("Example.COM.")), "example.com")

    def test_exact_name_only(self):
        """A name rule matches neither its subdomains nor other names."""
        self.assertNotMatches("example.com", "www.example.com")
        self.assertNotMatches("example.com", "badexample.com")
        self.assertNotMatches("example.com", "example.co")

    def test_subdomains_any_depth(self):
        """``*.example.com`` matches subdomains at any depth, in any case."""
        for host in ["www.example.com", "a.b.c.example.com", "WWW.Example.COM."]:
            self.assertMatches("*.example.com", host)

    def test_subdomains_not_the_domain(self):
        """``*.example.com`` matches neither ``example.com`` nor ``badexample.com``."""
        for host in ["example.com", "example.com.", "badexample.com", "www.badexample.com", "com", ".example.com"]:
            self.assertNotMatches("*.example.com", host)

    def test_name_rules_ignore_addresses(self):
        """Name rules do not match IP literals."""
        self.assertNotMatches("example.com", "93.184.216.34")
        self.assertNotMatches("*.com", "::1")

    def test_every_host(self):
        """A bare ``*`` matches every host, name or address, on every port."""
        for host in ["example.com", "10.0.0.1", "::1", "[2001:db8::1]", "localhost"]:
            self.assertMatches("*", host)
            self.assertMatches("*", host, 1)

    def test_international_name(self):
        """A non-ASCII name is its IDNA A-label and matches either spelling."""
        self.assertEqual(str(parse_rule("bücher.example")), "xn--bcher-kva.example")
        self.assertMatches("bücher.example", "xn--bcher-kva.example")
        self.assertMatches("*.bücher.example", "www.BÜCHER.example")

    def test_underscore_and_hyphen(self):
        """Labels may hold '_' and inner '-'."""
        self.assertMatches("_sip._tcp.my-host.example", "_SIP._tcp.my-host.example")

    def test_white_space_around(self):
        """White space around a rule is ignored."""
        self.assertEqual(parse_rule("  example.com \n"), parse_rule("example.com"))


class RuleObjectTests(SynchronousTestCase):
    """
    Rules as values.
    """

    def test_round_trip(self):
        """``str(rule)`` parses back to an equal rule."""
        for text in [
            "10.0.0.1", "10.0.0.0/8", "::1", "2001:db8::/32", "*:7777", "127.0.0.1:7777",
            "[::1]:443", "10.0.0.0/8:22", "[2001:db8::]/32:22", "example.com", "*.example.com",
            "example.com:80", "*.example.com:443", "*", "[::ffff:1.2.3.4]:5",
        ]:
            rule = parse_rule(text)
            self.assertEqual(parse_rule(str(rule)), rule, text)
            self.assertEqual(hash(parse_rule(str(rule))), hash(rule), text)

    def test_immutable(self):
        """Rules cannot be changed."""
        rule = parse_rule("example.com")
        self.assertRaises(dataclasses.FrozenInstanceError, setattr, rule, "port", 80)

    def test_repr(self):
        """A rule's repr shows its canonical text."""
        self.assertEqual(repr(parse_rule("[::1]:443")), "<Rule '[::1]:443'>")

    def test_inconsistent_fields(self):
        """Constructing a rule with contradictory fields fails."""
        network = parse_rule("10.0.0.0/8").network
        self.assertRaises(ValueError, Rule, network=network, name="example.com")
        self.assertRaises(ValueError, Rule, subdomains=True)
        self.assertRaises(ValueError, Rule, port=0)


class InvalidRuleTests(SynchronousTestCase):
    """
    Texts that are not rules.
    """

    def assertBad(self, texts, why):
        for text in texts:
            with self.assertRaises(RuleError, msg=text) as caught:
                parse_rule(text)
            message = str(caught.exception)
            self.assertTrue(message.startswith(f"bad rule {text.strip()!r}: "), message)
            self.assertIn(why, message)

    def test_empty(self):
        """Empty and blank rules are refused."""
        self.assertBad(["", "   "], "empty")

    def test_bad_ports(self):
        """Ports outside 1-65535, missing or not decimal are refused."""
        self.assertBad(["*:0", "*:70000", "1.2.3.4:abc", ":-1", "*:+80", "*:٣", "[::1]:0"], "port must be")
        self.assertBad(["*:", ":", "example.com:", "[::1]:"], "port is missing")

    def test_bad_networks(self):
        """Impossible prefixes and malformed addresses are refused."""
        self.assertBad(["10.0.0.0/33", "10.0.0.0/8/8", "10.0.0.0/", "1.2.3/8", "example.com/8"], "IPv4 network")
        self.assertBad(["2001:db8::/129", "[2001:db8::]/129", "[::1]/x:22"], "IPv6")
        self.assertBad(["10.0.0.256", "1.2.3", "1.2.3.4.5"], "nor a host name")

    def test_bad_brackets(self):
        """Unclosed brackets, IPv4 in brackets and junk after them are refused."""
        self.assertBad(["[::1", "[::1:80"], "']' is missing")
        self.assertBad(["[10.0.0.1]", "[example.com]:80", "[]:80"], "in brackets")
        self.assertBad(["[::1]80", "[::1]x"], "after ']'")

    def test_ambiguous_ipv6(self):
        """Malformed bare IPv6 text is refused with a hint about brackets."""
        self.assertBad(["::1::2", "2001:db8:::80", "::g"], "[::1]:443")

    def test_zone_index(self):
        """Rules with an IPv6 zone index are refused."""
        self.assertBad(["fe80::1%eth0", "[fe80::1%eth0]:80"], "zone")

    def test_bad_names(self):
        """Names with illegal characters, empty labels or misplaced '*' are refused."""
        self.assertBad(["exa mple.com", "a\tb", "example.com #x"], "white space")
        self.assertBad(["*.", "*.:80"], "missing")
        self.assertBad(["**.com", "a*.com", "*.*.com", "www.*.com", "*example.com"], "'*'")
        self.assertBad(["example..com", ".example.com", "example.com.."], "empty label")
        self.assertBad(["exa$mple.com", "-example.com", "example-.com", "x" * 64 + ".com"], "label")
        self.assertBad(["a." * 127 + "com"], "253")


class RuleSetTests(SynchronousTestCase):
    """
    Collections of rules.
    """

    def test_empty(self):
        """An empty set is false, has no rules and matches nothing."""
        rules = RuleSet()
        self.assertFalse(rules)
        self.assertEqual((len(rules), list(rules)), (0, []))
        self.assertIsNone(rules.match("10.0.0.1", 80))

    def test_first_match(self):
        """``match`` returns the first rule in order that matches."""
        rules = RuleSet.from_lines(["*.example.com:443", "www.example.com", "*.com", "*:443", "10.0.0.0/8"])
        self.assertEqual(str(rules.match("www.example.com", 443)), "*.example.com:443")
        self.assertEqual(str(rules.match("www.example.com", 80)), "www.example.com")
        self.assertEqual(str(rules.match("other.com", 443)), "*.com")
        self.assertEqual(str(rules.match("other.org", 443)), "*:443")
        self.assertEqual(str(rules.match("10.0.0.1", 443)), "*:443")
        self.assertEqual(str(rules.match("10.0.0.1", 80)), "10.0.0.0/8")
        self.assertIsNone(rules.match("other.org", 80))

    def test_sequence(self):
        """A set is true, sized and iterable in order."""
        texts = ["10.0.0.1", "example.com", "*:22"]
        rules = RuleSet(parse_rule(text) for text in texts)
        self.assertTrue(rules)
        self.assertEqual(len(rules), 3)
        self.assertEqual([str(rule) for rule in rules], texts)

    def test_add(self):
        """Adding sets concatenates them in order into a new set."""
        first, second = RuleSet.from_lines(["a.example"]), RuleSet.from_lines(["b.example", "a.example:1"])
        total = first + second
        self.assertIsInstance(total, RuleSet)
        self.assertEqual([str(rule) for rule in total], ["a.example", "b.example", "a.example:1"])
        self.assertEqual(len(first), 1)
        self.assertRaises(TypeError, lambda: first + [parse_rule("c.example")])

    def test_equality(self):
        """Sets with equal rules in the same order are equal and hash alike."""
        self.assertEqual(RuleSet.from_lines(["::1", "x.example"]), RuleSet.from_lines(["[::1]", "X.example."]))
        self.assertEqual(hash(RuleSet.from_lines(["::1"])), hash(RuleSet.from_lines(["[::1]"])))
        self.assertNotEqual(RuleSet.from_lines(["::1", "x.example"]), RuleSet.from_lines(["x.example", "::1"]))

    def test_only_rules(self):
        """A set holds rules only."""
        self.assertRaises(TypeError, RuleSet, ["10.0.0.1"])

    def test_from_lines_comments(self):
        """Blank lines, comment lines and comments after rules are ignored."""
        lines = ["# blocklist\n", "\n", "10.0.0.0/8   # private\r\n", "   \n", "  *:7777#inline\n", "#*.x.example"]
        self.assertEqual([str(rule) for rule in RuleSet.from_lines(lines)], ["10.0.0.0/8", "*:7777"])

    def test_from_lines_bad_line(self):
        """A bad line raises RuleError naming the source and the line number."""
        lines = ["# ok", "10.0.0.1", "exa mple.com  # oops", "*:70000"]
        error = self.assertRaises(RuleError, RuleSet.from_lines, lines, source="rules.txt")
        self.assertTrue(str(error).startswith("rules.txt line 3: bad rule 'exa mple.com': "), str(error))

    def test_from_lines_default_source(self):
        """Without a source, errors name ``<rules>``."""
        error = self.assertRaises(RuleError, RuleSet.from_lines, ["*:0"])
        self.assertTrue(str(error).startswith("<rules> line 1: bad rule '*:0': "), str(error))

    def test_repr(self):
        """A set's repr lists its rules' texts."""
        self.assertEqual(repr(RuleSet.from_lines(["::1", "*"])), "RuleSet(['::1', '*'])")

    @settings(max_examples=300, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from(
                    ["*", "a.example", "b.a.example", "*.a.example", "*.example", "*.b.a.example",
                     "10.0.0.0/8", "10.0.0.1", "::1", "0.0.0.0/0", "example"]
                ),
                st.sampled_from([None, 80, 443]),
            ),
            max_size=8,
        ),
        st.sampled_from(
            ["a.example", "b.a.example", "c.b.a.example", "example", "xa.example", "10.0.0.1",
             "10.9.9.9", "::1", "[::ffff:10.0.0.1]", "other.test", "A.Example.", ".a.example",
             "..a.example", ""]
        ),
        st.sampled_from([None, 80, 443, 22]),
    )
    def test_match_is_first_linear_match(self, specs, host, port):
        """The indexed ``match`` returns what a scan for the first matching rule returns."""
        rules = RuleSet(
            parse_rule(text if rule_port is None else f"{text}:{rule_port}") for text, rule_port in specs
        )
        expected = next((rule for rule in rules if RuleSet([rule]).match(host, port) is rule), None)
        self.assertIs(rules.match(host, port), expected)


class HostAddressTests(SynchronousTestCase):
    """
    ``host_address`` reads a destination as the resolver would, without a lookup.
    """

    def test_numeric_forms(self):
        """Numeric IPv4 forms read as inet_aton reads them; mapped IPv6 as IPv4; zones are kept."""
        for host, expected in [("0", "0.0.0.0"), ("0x0", "0.0.0.0"), ("127.1", "127.0.0.1"),
                               ("2130706433", "127.0.0.1"), ("0177.0.0.1", "127.0.0.1"),
                               ("0x7f.1", "127.0.0.1"), ("127.0.0.1.", "127.0.0.1"),
                               ("[::ffff:127.0.0.1]", "127.0.0.1"), ("::1%lo", "::1%lo")]:
            self.assertEqual(str(host_address(host)), expected, host)

    def test_names(self):
        """Host names, and numbers inet_aton refuses, are not addresses."""
        for host in ("localhost", "1.2.3.4.5", "0x", "example.com.", "256.0.0.1.example"):
            self.assertIsNone(host_address(host), host)

    def test_every_spelling_of_this_host(self):
        """Every spelling of this host but the names is read as an address."""
        for host in THIS_HOST:
            address = host_address(unbracketed(host))
            if host.rstrip(".").lower() in NAMES:
                self.assertIsNone(address, host)
            else:
                self.assertIsNotNone(address, host)


class IPv6SpellingTests(RuleTestMixin, SynchronousTestCase):
    """
    Hostile spellings of IPv6 addresses, as destinations and as clients, meet the rules written for the address.
    """

    def test_loopback_spellings(self):
        """Every spelling of ::1 (full, bracketed, upper case) is matched by a ::1 rule, with or without a port."""
        for host in ("::1", "[::1]", "0:0:0:0:0:0:0:1", "[0:0:0:0:0:0:0:1]", "0000::0001", "[0::1]"):
            self.assertMatches("::1", host)
            self.assertMatches("[::1]:443", host, 443)

    def test_mapped_spellings(self):
        """IPv4-mapped spellings of 127.0.0.1 are matched by IPv4 rules, and by their own mapped spelling."""
        for host in ("[::ffff:127.0.0.1]", "::ffff:7f00:1", "[::FFFF:7F00:0001]", "0:0:0:0:0:ffff:127.0.0.1"):
            self.assertMatches("127.0.0.0/8", host)
            self.assertMatches("::ffff:127.0.0.1", host)
            self.assertNotMatches("::1", host)

    def test_unspecified(self):
        """``[::]`` is read as the address ``::``; that it is this host is for netproxy.this_host to add."""
        self.assertMatches("::", "[::]")
        self.assertMatches("::/128", "0:0:0:0:0:0:0:0")
        self.assertNotMatches("::1", "[::]")

    def test_default_client_rules(self):
        """The default client allow-list admits IPv6 loopback clients and loopback over a dual-stack socket."""
        rules = RuleSet([parse_rule("127.0.0.0/8"), parse_rule("::1"), parse_rule("unix")])
        for client in ("::1", "::ffff:127.0.0.1", "127.0.0.1", "unix"):
            self.assertIsNotNone(rules.match(client), client)
        for client in ("::2", "fe80::1", "fd00::2", "::ffff:10.0.0.1", "2001:db8::1"):
            self.assertIsNone(rules.match(client), client)

    def test_client_networks(self):
        """An IPv6 network rule admits its clients, zone or not, and no IPv4 client."""
        self.assertMatches("fd00::/8", "fd00::2")
        self.assertMatches("fe80::/10", "fe80::fc:ff:fe00:1%eth0")
        self.assertNotMatches("fd00::/8", "10.0.0.1")
        self.assertNotMatches("::/0", "127.0.0.1")


class UnixClientRuleTests(RuleTestMixin, SynchronousTestCase):
    """
    The client rule ``unix`` (nginx's ``unix:``) names the clients of Unix
    sockets, which netproxy.connections.client_host calls ``unix``.
    """

    def test_unix_keyword(self):
        """``unix`` and ``unix:`` are the same rule, written ``unix``, matching the client ``unix``."""
        self.assertEqual(parse_rule("unix:"), parse_rule("unix"))
        self.assertEqual(str(parse_rule("unix:")), "unix")
        self.assertMatches("unix:", "unix")
        self.assertMatches("UNIX", "unix")

    def test_no_address_client(self):
        """``unix`` matches no IP client, and address rules do not match ``unix``."""
        for host in ("127.0.0.1", "::1", "10.0.0.1"):
            self.assertNotMatches("unix", host)
        self.assertNotMatches("127.0.0.0/8", "unix")
        self.assertNotMatches("::1", "unix")
