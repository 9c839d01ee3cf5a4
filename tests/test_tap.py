"""
Tests for L{netproxy.tap}: each role's options, the HTTP proxy's service, and
the help texts.  The message roles' services are tested in
L{tests.message.test_services}.
"""

from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.testing import UDPMemoryReactor
from tests.test_connections import assert_per_client_limit


def parse(*argv):
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def start(builder, options):
    reactor = UDPMemoryReactor()
    service = builder(options.subOptions, reactor)
    service.privilegedStartService()
    service.startService()
    return reactor, service


class RoleListTests(SynchronousTestCase):
    """
    The roles C{twistd netproxy} offers.
    """

    def test_roles_listed_in_help(self):
        """twistd netproxy --help lists every role with its description."""
        text = " ".join(str(tap.Options()).split())
        roles = {name: description for name, _, _, description in tap.Options.subCommands}
        self.assertEqual(sorted(roles), ["ack", "client", "http", "relay", "reverse", "server", "upper"])
        for role, description in roles.items():
            self.assertIn(f"{role} {description}", text)

    def test_role_required(self):
        """Naming no role is a usage error that lists the roles."""
        error = self.assertRaises(UsageError, parse)
        self.assertIn("relay", str(error))


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


class HttpCacheOptionsTests(SynchronousTestCase):
    """
    The HTTP proxy's cache options.
    """

    def test_cache_dir(self):
        """--cache-dir and --cache-size give the cache its directory and size bound."""
        path = self.mktemp()
        options = parse("http", "--cache-dir", path, "--cache-size", "2M")
        reactor, service = start(tap.http_service, options)
        store = reactor.tcpServers[0][1].cache.store
        self.assertEqual((store.path.path, store.max_size), (FilePath(path).path, 2 * 1024 * 1024))

    def test_systemd_cache_directory(self):
        """Without --cache-dir, the directory systemd names in $CACHE_DIRECTORY is used."""
        self.patch(tap.os, "environ", {"CACHE_DIRECTORY": "/var/cache/netproxy/http"})
        self.assertEqual(parse("http").subOptions["cache-dir"], "/var/cache/netproxy/http")

    def test_default_cache_dir(self):
        """With neither, the cache is ./netproxy-cache."""
        self.patch(tap.os, "environ", {})
        self.assertEqual(parse("http").subOptions["cache-dir"], "netproxy-cache")

    def test_no_cache(self):
        """--no-cache builds a proxy without a cache."""
        reactor, service = start(tap.http_service, parse("http", "--no-cache"))
        self.assertIsNone(reactor.tcpServers[0][1].cache)

    def test_admin(self):
        """--admin names the networks allowed to PURGE; loopback by default."""
        reactor, service = start(tap.http_service, parse("http", "--no-cache", "--admin", "10.0.0.0/8"))
        admin = reactor.tcpServers[0][1].admin
        self.assertIsNotNone(admin.match("10.1.2.3"))
        self.assertIsNone(admin.match("127.0.0.1"))
        default = parse("http").subOptions["admin"]
        self.assertIsNotNone(default.match("127.0.0.1"))
        self.assertIsNotNone(default.match("::1"))

    def test_unix_clients_by_default(self):
        """Unix-socket clients (the client "unix") are allowed and admin by default, not once --allow is given."""
        options = parse("http").subOptions
        self.assertIsNotNone(options["allow"].match("unix"))
        self.assertIsNotNone(options["admin"].match("unix"))
        self.assertIsNone(parse("http", "--allow", "127.0.0.1").subOptions["allow"].match("unix"))
        self.assertIsNotNone(parse("http", "--allow", "unix:").subOptions["allow"].match("unix"))

    def test_per_client_limit(self):
        """With --max-connections-per-client 40 the proxy refuses a 41st connection from one address, not another's."""
        options = parse("http", "--no-cache", "--max-connections", "100", "--max-connections-per-client", "40")
        reactor, service = start(tap.http_service, options)
        assert_per_client_limit(self, reactor.tcpServers[0][1])

    def test_listening_addresses(self):
        """The proxy learns the addresses it listens on as its ports start: nothing is forwarded to them."""
        reactor, service = start(tap.http_service, parse("http", "--no-cache", "--listen", "tcp:3128"))
        factory = reactor.tcpServers[0][1]
        self.assertIsNotNone(factory.listening.match("127.0.0.1", 3128))
        self.assertIsNone(factory.listening.match("127.0.0.1", 3129))

    def test_stall_monitor(self):
        """The proxy's service starts and stops the monitor of the reactor's stalls its /metrics shows."""
        reactor, service = start(tap.http_service, parse("http", "--no-cache"))
        stalls = reactor.tcpServers[0][1].metrics.stalls
        self.assertTrue(stalls.running)
        reactor.advance(1.5)
        self.assertGreater(stalls.longest, 1)
        service.stopService()
        self.assertFalse(stalls.running)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_bad_cache_size(self):
        """A bad --cache-size is refused naming the option."""
        error = self.assertRaises(UsageError, parse, "http", "--cache-size", "lots")
        self.assertEqual(str(error), "--cache-size: expected a size like 512M, got 'lots'")


class HttpLocalOptionsTests(SynchronousTestCase):
    """
    The HTTP proxy refuses destinations on this host unless --allow-local is given.
    """

    def test_local_refused_by_default(self):
        """By default the proxy refuses local destinations, and re-reads this host's addresses on SIGHUP."""
        from netproxy import this_host
        from netproxy.reload import ReloadOnHangup

        reads = []
        self.patch(this_host.LocalDestinations, "reload", lambda local: reads.append(local))
        reactor, service = start(tap.http_service, parse("http", "--no-cache"))
        self.addCleanup(service.stopService)
        local = reactor.tcpServers[0][1].local
        self.assertIsInstance(local, this_host.LocalDestinations)
        [reloader] = [child for child in service if isinstance(child, ReloadOnHangup)]
        reloader.reload()
        self.assertEqual(reads, [local, local])

    def test_allow_local(self):
        """--allow-local lets local destinations through: the proxy checks none."""
        from netproxy.reload import ReloadOnHangup

        reactor, service = start(tap.http_service, parse("http", "--no-cache", "--allow-local"))
        self.addCleanup(service.stopService)
        self.assertIsNone(reactor.tcpServers[0][1].local)
        self.assertEqual([child for child in service if isinstance(child, ReloadOnHangup)], [])

    def test_relay_has_no_allow_local(self):
        """The relay allows local destinations (its peers live there): it has no --allow-local."""
        self.assertRaises(UsageError, parse, "relay", "--allow-local")


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


class ClientRoleTests(SynchronousTestCase):
    """
    The client role.
    """

    def test_client_options_shared_with_command(self):
        """The client role parses the same subcommands as netproxy-client."""
        options = parse("client", "upper", "127.0.0.1", "12000", "hi", "--udp")
        sub = options.subOptions
        self.assertEqual(sub.subCommand, "upper")
        self.assertEqual((sub.subOptions["host"], sub.subOptions["port"], sub.subOptions["text"]), ("127.0.0.1", 12000, "hi"))
        self.assertTrue(sub.subOptions["udp"])


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


class HelpTextTests(SynchronousTestCase):
    """
    The help texts of the roles that twistd serves.
    """

    def test_no_stray_spacing(self):
        """No option's description holds a line break or a run of spaces (as an indented docstring would)."""
        for name, _, options_class, _ in tap.Options.subCommands:
            if name == "client":
                continue
            for option, text in options_class().docs.items():
                self.assertEqual(text.strip(), " ".join(text.split()), f"{name} --{option}")
