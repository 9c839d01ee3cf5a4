"""
Tests for L{netproxy.tap}: each role's options and the services they build.
"""

from twisted.python.filepath import FilePath
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.message.ack import AckFactory
from netproxy.message.relay import RelayFactory
from netproxy.reload import ReloadOnHangup
from netproxy.message.reverse_metrics import MetricsPage
from netproxy.testing import UDPMemoryReactor
from netproxy.message.upper import UpperDatagramProtocol, UpperFactory


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
    def test_roles_listed_in_help(self):
        """twistd netproxy --help lists every role with its description."""
        text = str(tap.Options())
        for role in ("relay", "ack", "upper", "client"):
            self.assertIn(role, text)

    def test_role_required(self):
        """Naming no role is a usage error that lists the roles."""
        error = self.assertRaises(UsageError, parse)
        self.assertIn("relay", str(error))


class RelayOptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """By default the relay listens on 127.0.0.1:6000 and blocks nothing."""
        options = parse("relay")
        reactor, service = start(tap.relay_service, options)
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (6000, "127.0.0.1"))
        self.assertIsInstance(factory, RelayFactory)
        self.assertEqual((factory.idle_timeout, factory.connect_timeout, factory.max_size), (30.0, 10.0, 65536))
        self.assertIsNone(factory.rules.match("127.0.0.1", 7777))

    def test_block_rules(self):
        """Each --block adds a rule the relay's factory matches."""
        options = parse("relay", "--block", "127.0.0.1:7777", "--block", "*.example.com")
        reactor, service = start(tap.relay_service, options)
        factory = reactor.tcpServers[0][1]
        self.assertIsNotNone(factory.rules.match("127.0.0.1", 7777))
        self.assertIsNotNone(factory.rules.match("www.example.com", 80))
        self.assertIsNone(factory.rules.match("127.0.0.1", 8888))

    def test_bad_block_rule(self):
        """A bad --block rule is a usage error naming the option."""
        error = self.assertRaises(UsageError, parse, "relay", "--block", "*:70000")
        self.assertTrue(str(error).startswith("--block:"), str(error))

    def test_blocklist_read_and_reloaded(self):
        """--blocklist rules are in force and a SIGHUP reloader is attached."""
        path = FilePath(self.mktemp())
        path.setContent(b"# test\n127.0.0.1:8888\n")
        options = parse("relay", "--blocklist", path.path)
        reactor, service = start(tap.relay_service, options)
        factory = reactor.tcpServers[0][1]
        self.assertIsNotNone(factory.rules.match("127.0.0.1", 8888))
        self.assertIsInstance(list(service)[0], ReloadOnHangup)
        service.stopService()

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

    def test_listen_port_shorthand(self):
        """--listen with a bare port listens on loopback at that port."""
        reactor, service = start(tap.relay_service, parse("relay", "--listen", "6100"))
        self.assertEqual(reactor.tcpServers[0][0], 6100)
        self.assertEqual(reactor.tcpServers[0][3], "127.0.0.1")

    def test_bad_values_name_their_option(self):
        """Bad timeouts, sizes and limits are refused naming the option."""
        for argv, option in [
            (["--idle-timeout", "soon"], "--idle-timeout"),
            (["--connect-timeout", "-1"], "--connect-timeout"),
            (["--max-size", "lots"], "--max-size"),
            (["--max-connections", "0"], "--max-connections"),
            (["--listen", "nonsense:1"], "--listen"),
        ]:
            error = self.assertRaises(UsageError, parse, "relay", *argv)
            self.assertTrue(str(error).startswith(option + ":"), str(error))

    def test_limits_reach_factory(self):
        """--max-size, --idle-timeout and --max-connections configure the factory."""
        options = parse("relay", "--max-size", "1K", "--idle-timeout", "2.5", "--max-connections", "7")
        reactor, service = start(tap.relay_service, options)
        factory = reactor.tcpServers[0][1]
        self.assertEqual((factory.max_size, factory.idle_timeout, factory.max_connections), (1024, 2.5, 7))


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

    def test_bad_cache_size(self):
        """A bad --cache-size is refused naming the option."""
        error = self.assertRaises(UsageError, parse, "http", "--cache-size", "lots")
        self.assertEqual(str(error), "--cache-size: expected a size like 512M, got 'lots'")


class AckOptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """The ack server listens on 127.0.0.1:8888 and answers DONE."""
        reactor, service = start(tap.ack_service, parse("ack"))
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (8888, "127.0.0.1"))
        self.assertIsInstance(factory, AckFactory)
        self.assertEqual(factory.reply, b"DONE")

    def test_reply(self):
        """--reply sets the answer, UTF-8 encoded."""
        reactor, service = start(tap.ack_service, parse("ack", "--reply", "reçu"))
        self.assertEqual(reactor.tcpServers[0][1].reply, "reçu".encode())


class UpperOptionsTests(SynchronousTestCase):
    def test_defaults(self):
        """The upper server listens on TCP and UDP port 12000 of 127.0.0.1."""
        reactor, service = start(tap.upper_service, parse("upper"))
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (12000, "127.0.0.1"))
        self.assertIsInstance(factory, UpperFactory)
        [udp] = reactor.udpPorts
        self.assertEqual((udp.port, udp.interface), (12000, "127.0.0.1"))
        self.assertIsInstance(udp.protocol, UpperDatagramProtocol)

    def test_only_tcp(self):
        """--no-udp leaves only the TCP listener."""
        reactor, service = start(tap.upper_service, parse("upper", "--no-udp", "--tcp", "12001"))
        self.assertEqual([(entry[0], type(entry[1])) for entry in reactor.tcpServers], [(12001, UpperFactory)])
        self.assertEqual(reactor.udpPorts, [])

    def test_nothing_to_serve(self):
        """--no-tcp with --no-udp is refused."""
        self.assertRaises(UsageError, parse, "upper", "--no-tcp", "--no-udp")

    def test_bad_port(self):
        """A bad --udp port is refused naming the option."""
        error = self.assertRaises(UsageError, parse, "upper", "--udp", "seventy")
        self.assertTrue(str(error).startswith("--udp:"))


class ClientRoleTests(SynchronousTestCase):
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

    def test_metrics_endpoint(self):
        """--metrics adds a web listener serving the metrics page; a bare port is loopback."""
        options = parse("reverse", "--port", "5000", "--metrics", "9105")
        self.assertEqual(options.subOptions["metrics"], "tcp:9105:interface=127.0.0.1")
        reactor, service = start(tap.reverse_service, options)
        ports = [(port, factory) for port, factory, _, interface in reactor.tcpServers]
        self.assertEqual([port for port, _ in ports], [5000, 9105])
        self.assertIsInstance(ports[1][1].resource, MetricsPage)

    def test_off_by_default(self):
        """Without --metrics, only the message listener."""
        reactor, service = start(tap.reverse_service, parse("reverse", "--port", "5000"))
        self.assertEqual(len(reactor.tcpServers), 1)

    def test_bad_endpoint(self):
        """A bad --metrics endpoint is refused naming the option."""
        error = self.assertRaises(UsageError, parse, "reverse", "--metrics", "nonsense:1")
        self.assertTrue(str(error).startswith("--metrics: not an endpoint"), str(error))
