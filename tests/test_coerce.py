"""
Tests for L{netproxy.coerce}: option values and the errors naming options.
"""

from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy import coerce
from netproxy.acl import parse_rule


class ListenEndpointTests(SynchronousTestCase):
    def test_bare_port_is_loopback(self):
        """A bare port listens on 127.0.0.1 only."""
        self.assertEqual(coerce.listen_endpoint("listen", "6000"), "tcp:6000:interface=127.0.0.1")

    def test_bare_zero_asks_for_any_free_port(self):
        """Port 0 is accepted, for tests and ephemeral listeners."""
        self.assertEqual(coerce.listen_endpoint("listen", "0"), "tcp:0:interface=127.0.0.1")

    def test_endpoint_string_kept(self):
        """A valid endpoint description is returned unchanged."""
        for text in ("tcp:8888:interface=127.0.0.1", "unix:/tmp/np.sock", "tcp6:443:interface=\\:\\:1"):
            self.assertEqual(coerce.listen_endpoint("listen", text), text)

    def test_bad_endpoint_names_option(self):
        """An unparseable description is refused with the option's name and the text."""
        error = self.assertRaises(UsageError, coerce.listen_endpoint, "listen", "bogus:1")
        self.assertIn("--listen:", str(error))
        self.assertIn("'bogus:1'", str(error))

    def test_bare_port_out_of_range(self):
        """A bare port above 65535 is refused."""
        error = self.assertRaises(UsageError, coerce.listen_endpoint, "listen", "70000")
        self.assertIn("--listen: expected a port from 1 to 65535, got '70000'", str(error))


class NumberTests(SynchronousTestCase):
    def test_port_number(self):
        """Ports 1 to 65535 are accepted, others refused with the option's name."""
        self.assertEqual(coerce.port_number("port", "1"), 1)
        self.assertEqual(coerce.port_number("port", "65535"), 65535)
        for bad in ("0", "65536", "-1", "http", "", "1.5"):
            error = self.assertRaises(UsageError, coerce.port_number, "port", bad)
            self.assertIn("--port:", str(error))

    def test_seconds(self):
        """Positive finite durations are accepted, fractions included."""
        self.assertEqual(coerce.seconds("timeout", "30"), 30.0)
        self.assertEqual(coerce.seconds("timeout", "0.25"), 0.25)
        for bad in ("0", "-1", "soon", "nan", "inf", ""):
            error = self.assertRaises(UsageError, coerce.seconds, "timeout", bad)
            self.assertEqual(str(error), f"--timeout: expected a number of seconds, got {bad!r}")

    def test_size(self):
        """Sizes take K, M, G, T suffixes in powers of 1024."""
        self.assertEqual(coerce.size("max-size", "65536"), 65536)
        self.assertEqual(coerce.size("max-size", "64K"), 65536)
        self.assertEqual(coerce.size("max-size", "512M"), 512 << 20)
        self.assertEqual(coerce.size("max-size", "1g"), 1 << 30)
        self.assertEqual(coerce.size("max-size", "1.5KiB"), 1536)

    def test_bad_size(self):
        """A size that is not a size is refused with the wording the README documents."""
        error = self.assertRaises(UsageError, coerce.size, "cache-size", "lots")
        self.assertEqual(str(error), "--cache-size: expected a size like 512M, got 'lots'")
        self.assertRaises(UsageError, coerce.size, "cache-size", "0")

    def test_count(self):
        """Counts are whole numbers of at least one."""
        self.assertEqual(coerce.count("max-connections", "10"), 10)
        for bad in ("0", "-3", "many", "2.5"):
            self.assertRaises(UsageError, coerce.count, "max-connections", bad)

    def test_host_and_port(self):
        """HOST:PORT, [V6]:PORT and bare ports are understood."""
        self.assertEqual(coerce.host_and_port("proxy", "10.1.2.3:6000"), ("10.1.2.3", 6000))
        self.assertEqual(coerce.host_and_port("proxy", "[::1]:6000"), ("::1", 6000))
        self.assertEqual(coerce.host_and_port("proxy", "6000"), ("127.0.0.1", 6000))
        self.assertRaises(UsageError, coerce.host_and_port, "proxy", "host:")
        self.assertRaises(UsageError, coerce.host_and_port, "proxy", ":80")


class RuleTests(SynchronousTestCase):
    """
    Access rules and rules files given as options.
    """

    def test_rule(self):
        """A rule parses to the rule parse_rule makes."""
        self.assertEqual(coerce.rule("block", "*.example.com:443"), parse_rule("*.example.com:443"))

    def test_bad_rule_names_option(self):
        """A bad rule is refused with the option's name and the parser's reason."""
        error = self.assertRaises(UsageError, coerce.rule, "allow", "10.0.0.0/33")
        self.assertTrue(str(error).startswith("--allow: bad rule '10.0.0.0/33': "), str(error))

    def test_rules_file(self):
        """The fixed rules come before the file's, and the file is read at once."""
        path = FilePath(self.mktemp())
        path.setContent(b"10.0.0.0/8\n")
        rules = coerce.rules_file("blocklist", [parse_rule("*:25")], path.path)
        self.assertEqual([str(rule) for rule in rules.rules], ["*:25", "10.0.0.0/8"])

    def test_no_rules_file(self):
        """Without a file only the fixed rules are in force."""
        rules = coerce.rules_file("blocklist", [parse_rule("*:25")], None)
        self.assertEqual([str(rule) for rule in rules.rules], ["*:25"])

    def test_bad_rules_file_names_option(self):
        """A rules file with a bad line is refused with the option's name, the file and the line."""
        path = FilePath(self.mktemp())
        path.setContent(b"10.0.0.1\nnot a rule\n")
        error = self.assertRaises(UsageError, coerce.rules_file, "blocklist", [], path.path)
        self.assertTrue(str(error).startswith(f"--blocklist: {path.path} line 2: "), str(error))
