"""
Tests for L{netproxy.message.options}: the options of the message roles.
"""

from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from tests.test_tap import parse


class RelayOptionsTests(SynchronousTestCase):
    """
    The relay's options.
    """

    def test_bad_block_rule(self):
        """A bad --block rule is a usage error naming the option."""
        error = self.assertRaises(UsageError, parse, "relay", "--block", "*:70000")
        self.assertTrue(str(error).startswith("--block:"), str(error))

    def test_bad_blocklist_refused_at_start(self):
        """A blocklist with a bad line stops start-up with the file and line named."""
        path = FilePath(self.mktemp())
        path.setContent(b"10.0.0.0/8\nnot a rule\n")
        error = self.assertRaises(UsageError, parse, "relay", "--blocklist", path.path)
        self.assertIn("--blocklist:", str(error))
        self.assertIn("line 2", str(error))

    def test_missing_blocklist_refused(self):
        """A blocklist that does not exist stops start-up."""
        self.assertRaises(UsageError, parse, "relay", "--blocklist", self.mktemp())

    def test_bad_values_name_their_option(self):
        """Bad timeouts, sizes and limits are refused naming the option."""
        for argv, option in [
            (["--idle-timeout", "soon"], "--idle-timeout"),
            (["--connect-timeout", "-1"], "--connect-timeout"),
            (["--max-size", "lots"], "--max-size"),
            (["--max-connections", "0"], "--max-connections"),
            (["--max-connections-per-client", "none"], "--max-connections-per-client"),
            (["--listen", "nonsense:1"], "--listen"),
        ]:
            error = self.assertRaises(UsageError, parse, "relay", *argv)
            self.assertTrue(str(error).startswith(option + ":"), str(error))


class UpperOptionsTests(SynchronousTestCase):
    """
    The upper server's options.
    """

    def test_nothing_to_serve(self):
        """--no-tcp with --no-udp is refused."""
        self.assertRaises(UsageError, parse, "upper", "--no-tcp", "--no-udp")

    def test_bad_port(self):
        """A bad --udp port is refused naming the option."""
        error = self.assertRaises(UsageError, parse, "upper", "--udp", "seventy")
        self.assertTrue(str(error).startswith("--udp:"))


class ReverseMetricsOptionTests(SynchronousTestCase):
    """
    The reverse proxy's --metrics endpoint.
    """

    def test_bad_endpoint(self):
        """A bad --metrics endpoint is refused naming the option."""
        error = self.assertRaises(UsageError, parse, "reverse", "--metrics", "nonsense:1")
        self.assertTrue(str(error).startswith("--metrics: not an endpoint"), str(error))


class ReverseRegistrationOptionTests(SynchronousTestCase):
    """
    The reverse proxy's --allow-servers, --max-servers, --max-servers-per-host and --max-tries.
    """

    def test_defaults(self):
        """By default loopback may register, 1024 servers in all, 64 per host, 3 tries per message."""
        sub = parse("reverse").subOptions
        self.assertEqual([str(rule) for rule in sub["allow-servers"]], ["127.0.0.0/8", "::1"])
        self.assertEqual((sub["max-servers"], sub["max-servers-per-host"], sub["max-tries"]), (1024, 64, 3))

    def test_allow_servers_repeated(self):
        """--allow-servers takes addresses and networks, repeated, replacing the loopback default."""
        sub = parse("reverse", "--allow-servers", "10.0.0.0/8", "--allow-servers", "2001:db8::1").subOptions
        self.assertEqual([str(rule) for rule in sub["allow-servers"]], ["10.0.0.0/8", "2001:db8::1"])
        self.assertIsNone(sub["allow-servers"].match("127.0.0.1"))

    def test_allow_servers_not_a_network(self):
        """A host name, a port or a bad network given to --allow-servers stops start-up naming the option."""
        for value in ("example.com", "10.0.0.1:80", "10.0.0.0/33"):
            error = self.assertRaises(UsageError, parse, "reverse", "--allow-servers", value)
            self.assertTrue(str(error).startswith("--allow-servers: "), str(error))

    def test_bad_counts(self):
        """A limit that is not a whole number of at least 1 stops start-up naming the option."""
        for name in ("max-servers", "max-servers-per-host", "max-tries"):
            for value in ("0", "many", "-1"):
                error = self.assertRaises(UsageError, parse, "reverse", f"--{name}", value)
                self.assertTrue(str(error).startswith(f"--{name}: "), str(error))


class ReverseSharedRegistryOptionTests(SynchronousTestCase):
    """
    The reverse proxy's --registry, --lease and --workers.
    """

    def test_defaults(self):
        """By default the table is in memory, a lease is 10 s, and one process serves."""
        sub = parse("reverse").subOptions
        self.assertEqual((sub["registry"], sub["lease"], sub["workers"]), (None, 10.0, 1))

    def test_redis_url(self):
        """A redis:// URL is parsed into its address."""
        sub = parse("reverse", "--registry", "redis://10.0.0.5:6380/2", "--lease", "30").subOptions
        address = sub["registry"]
        self.assertEqual((address.host, address.port, address.database), ("10.0.0.5", 6380, 2))
        self.assertEqual(sub["lease"], 30.0)

    def test_bad_registry(self):
        """A --registry that is neither memory nor a redis:// URL stops start-up naming the option."""
        for value in ("redis", "redis://h:port/0", "postgres://h/0", "redis://h/0?x=1"):
            error = self.assertRaises(UsageError, parse, "reverse", "--registry", value)
            self.assertTrue(str(error).startswith("--registry: expected redis://"), str(error))

    def test_bad_lease(self):
        """A lease under three seconds (renewals come every second: a lease of one would end as it is renewed), or not a
        duration, stops start-up naming --lease."""
        for value in ("0.5", "1", "2.9", "soon"):
            error = self.assertRaises(UsageError, parse, "reverse", "--lease", value)
            self.assertTrue(str(error).startswith("--lease: "), str(error))

    def test_shared_table_bounded(self):
        """With a shared registry --max-servers is at most 65536 (a renewal reads the table back in one reply); in memory it is not bounded so."""
        error = self.assertRaises(UsageError, parse, "reverse", "--registry", "redis://127.0.0.1:6379/0",
                                  "--max-servers", "65537")
        self.assertEqual(str(error), "--max-servers: at most 65536 with a shared --registry, got 65537")
        shared = parse("reverse", "--registry", "redis://127.0.0.1:6379/0", "--max-servers", "65536")
        self.assertEqual(shared.subOptions["max-servers"], 65536)
        self.assertEqual(parse("reverse", "--max-servers", "100000").subOptions["max-servers"], 100000)

    def test_workers_need_shared_registry(self):
        """--workers above 1 with the table in memory is refused naming --workers and --registry."""
        error = self.assertRaises(UsageError, parse, "reverse", "--workers", "2")
        self.assertTrue(str(error).startswith("--workers above 1 needs a shared --registry"), str(error))

    def test_workers_with_redis(self):
        """--workers above 1 with a redis:// registry is taken; the listener must be TCP."""
        sub = parse("reverse", "--workers", "2", "--registry", "redis://127.0.0.1/0").subOptions
        self.assertEqual(sub["workers"], 2)
        error = self.assertRaises(UsageError, parse, "reverse", "--workers", "2", "--registry",
                                  "redis://127.0.0.1/0", "--listen", "unix:/tmp/reverse.sock")
        self.assertTrue(str(error).startswith("--listen: with --workers above 1"), str(error))

    def test_workers_without_metrics(self):
        """--metrics with --workers above 1 is refused naming --metrics."""
        error = self.assertRaises(UsageError, parse, "reverse", "--workers", "2", "--registry",
                                  "redis://127.0.0.1/0", "--metrics", "9105")
        self.assertTrue(str(error).startswith("--metrics cannot be used with --workers"), str(error))
