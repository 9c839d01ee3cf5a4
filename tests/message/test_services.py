"""
Tests for L{netproxy.message.services}: the services each message role's
parsed options build, started on a memory reactor.
"""

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.message import services
from netproxy.message.ack import AckFactory
from netproxy.message.redis_registry import RedisRegistry
from netproxy.message.registry import ServerRegistry
from netproxy.message.relay import RelayFactory
from netproxy.metrics_page import MetricsPage
from netproxy.stalls import StallMonitor
from netproxy.message.upper import UpperDatagramProtocol, UpperFactory
from netproxy.reload import ReloadOnHangup
from netproxy.tap import Options
from netproxy.testing import UDPMemoryReactor
from tests.test_connections import assert_per_client_limit

LIMITS = ("--max-connections", "100", "--max-connections-per-client", "40")


def parse(*argv: str) -> Options:
    """
    :returns: C{twistd netproxy} options parsed from C{argv}.
    """
    options = Options()
    options.parseOptions(list(argv))
    return options


def start(builder, options):
    """
    Build a role's service from its options and start it on a memory reactor.

    :returns: the reactor and the running service.
    """
    reactor = UDPMemoryReactor()
    service = builder(options.subOptions, reactor)
    service.privilegedStartService()
    service.startService()
    return reactor, service


class RelayServiceTests(SynchronousTestCase):
    """
    The relay's listener, rules and limits.
    """

    def test_defaults(self):
        """By default the relay listens on 127.0.0.1:6000 and blocks nothing."""
        options = parse("relay")
        reactor, service = start(services.relay_service, options)
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (6000, "127.0.0.1"))
        self.assertIsInstance(factory, RelayFactory)
        self.assertEqual((factory.idle_timeout, factory.connect_timeout, factory.max_size), (30.0, 10.0, 65536))
        self.assertIsNone(factory.rules.match("127.0.0.1", 7777))

    def test_block_rules(self):
        """Each --block adds a rule the relay's factory matches."""
        options = parse("relay", "--block", "127.0.0.1:7777", "--block", "*.example.com")
        reactor, service = start(services.relay_service, options)
        factory = reactor.tcpServers[0][1]
        self.assertIsNotNone(factory.rules.match("127.0.0.1", 7777))
        self.assertIsNotNone(factory.rules.match("www.example.com", 80))
        self.assertIsNone(factory.rules.match("127.0.0.1", 8888))

    def test_blocklist_read_and_reloaded(self):
        """--blocklist rules are in force and a SIGHUP reloader is attached."""
        path = FilePath(self.mktemp())
        path.setContent(b"# test\n127.0.0.1:8888\n")
        options = parse("relay", "--blocklist", path.path)
        reactor, service = start(services.relay_service, options)
        factory = reactor.tcpServers[0][1]
        self.assertIsNotNone(factory.rules.match("127.0.0.1", 8888))
        self.assertIsInstance(list(service)[0], ReloadOnHangup)
        service.stopService()

    def test_listen_port_shorthand(self):
        """--listen with a bare port listens on loopback at that port."""
        reactor, service = start(services.relay_service, parse("relay", "--listen", "6100"))
        self.assertEqual(reactor.tcpServers[0][0], 6100)
        self.assertEqual(reactor.tcpServers[0][3], "127.0.0.1")

    def test_limits_reach_factory(self):
        """--max-size, --idle-timeout and --max-connections configure the factory."""
        options = parse("relay", "--max-size", "1K", "--idle-timeout", "2.5", "--max-connections", "7")
        reactor, service = start(services.relay_service, options)
        factory = reactor.tcpServers[0][1]
        self.assertEqual((factory.max_size, factory.idle_timeout, factory.max_connections), (1024, 2.5, 7))

    def test_per_client_limit(self):
        """With --max-connections-per-client 40 the 41st connection from one address is refused, not another's."""
        reactor, service = start(services.relay_service, parse("relay", *LIMITS))
        assert_per_client_limit(self, reactor.tcpServers[0][1])

    def test_per_client_default(self):
        """Without --max-connections-per-client one client may hold a quarter of --max-connections."""
        reactor, service = start(services.relay_service, parse("relay", "--max-connections", "160"))
        assert_per_client_limit(self, reactor.tcpServers[0][1])


class AckServiceTests(SynchronousTestCase):
    """
    The ack server's listener and reply.
    """

    def test_defaults(self):
        """The ack server listens on 127.0.0.1:8888 and answers DONE."""
        reactor, service = start(services.ack_service, parse("ack"))
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (8888, "127.0.0.1"))
        self.assertIsInstance(factory, AckFactory)
        self.assertEqual(factory.reply, b"DONE")

    def test_reply(self):
        """--reply sets the answer, UTF-8 encoded."""
        reactor, service = start(services.ack_service, parse("ack", "--reply", "reçu"))
        self.assertEqual(reactor.tcpServers[0][1].reply, "reçu".encode())

    def test_per_client_limit(self):
        """With --max-connections-per-client 40 the 41st connection from one address is refused, not another's."""
        reactor, service = start(services.ack_service, parse("ack", *LIMITS))
        assert_per_client_limit(self, reactor.tcpServers[0][1])


class UpperServiceTests(SynchronousTestCase):
    """
    The upper server's TCP and UDP listeners.
    """

    def test_defaults(self):
        """The upper server listens on TCP and UDP port 12000 of 127.0.0.1."""
        reactor, service = start(services.upper_service, parse("upper"))
        [(port, factory, backlog, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (12000, "127.0.0.1"))
        self.assertIsInstance(factory, UpperFactory)
        [udp] = reactor.udpPorts
        self.assertEqual((udp.port, udp.interface), (12000, "127.0.0.1"))
        self.assertIsInstance(udp.protocol, UpperDatagramProtocol)

    def test_only_tcp(self):
        """--no-udp leaves only the TCP listener."""
        reactor, service = start(services.upper_service, parse("upper", "--no-udp", "--tcp", "12001"))
        self.assertEqual([(entry[0], type(entry[1])) for entry in reactor.tcpServers], [(12001, UpperFactory)])
        self.assertEqual(reactor.udpPorts, [])


class ReverseServiceTests(SynchronousTestCase):
    """
    The reverse proxy's listener and its --metrics endpoint.
    """

    def test_metrics_endpoint(self):
        """--metrics adds a web listener serving the metrics page; a bare port is loopback."""
        options = parse("reverse", "--port", "5000", "--metrics", "9105")
        self.assertEqual(options.subOptions["metrics"], "tcp:9105:interface=127.0.0.1")
        reactor, service = start(services.reverse_service, options)
        ports = [(port, factory) for port, factory, _, interface in reactor.tcpServers]
        self.assertEqual([port for port, _ in ports], [5000, 9105])
        self.assertIsInstance(ports[1][1].resource, MetricsPage)
        # The reactor's stalls are measured while the role runs.
        [stalls] = [child for child in service if isinstance(child, StallMonitor)]
        self.assertTrue(stalls.running)
        reactor.advance(0.5)
        self.assertGreater(stalls.longest, 0.4)

    def test_off_by_default(self):
        """Without --metrics, only the message listener, and no stall monitor."""
        reactor, service = start(services.reverse_service, parse("reverse", "--port", "5000"))
        self.assertEqual(len(reactor.tcpServers), 1)
        self.assertEqual([child for child in service if isinstance(child, StallMonitor)], [])

    def test_registration_limits(self):
        """--allow-servers, --max-servers, --max-servers-per-host and --max-tries reach the reverse proxy."""
        options = parse("reverse", "--port", "5000", "--allow-servers", "10.0.0.0/8", "--max-servers", "7",
                        "--max-servers-per-host", "2", "--max-tries", "5")
        reactor, service = start(services.reverse_service, options)
        factory = reactor.tcpServers[0][1]
        self.assertEqual(factory.allow_servers, options.subOptions["allow-servers"])
        self.assertEqual((factory.registry.max_servers, factory.registry.max_per_host), (7, 2))
        self.assertEqual(factory.forwarder.max_tries, 5)

class ReverseSharedRegistryServiceTests(SynchronousTestCase):
    """
    The reverse proxy with its table in Redis.
    """

    def test_in_memory_by_default(self):
        """Without --registry the table is a ServerRegistry of this process."""
        reactor, service = start(services.reverse_service, parse("reverse", "--port", "5000"))
        self.assertIsInstance(reactor.tcpServers[0][1].registry, ServerRegistry)

    def test_redis_registry(self):
        """--registry redis:// builds a running RedisRegistry for that address, which stops after the listener drains."""
        options = parse("reverse", "--port", "5000", "--registry", "redis://10.0.0.5:6380/1", "--lease", "20")
        reactor, service = start(services.reverse_service, options)
        registry = reactor.tcpServers[0][1].registry
        self.assertIsInstance(registry, RedisRegistry)
        self.assertIs(reactor.tcpServers[0][1].forwarder.registry, registry)
        self.assertTrue(registry.running)
        self.assertEqual(str(registry.client.address), "redis://10.0.0.5:6380/1")
        self.assertIsInstance(service, services.StopInOrder)
        self.assertEqual(list(service)[0], registry)
        stopped = service.stopService()
        self.successResultOf(stopped)
        self.assertFalse(registry.running)


class StopInOrderTests(SynchronousTestCase):
    """
    Children stopped one after another.
    """

    def test_last_first_each_after_the_other(self):
        """The last child stops first; the one before it only once that one has stopped."""
        from twisted.application.service import Service
        from twisted.internet.defer import Deferred

        stops = []

        class Slow(Service):
            def __init__(self, name):
                self.name = name
                self.done = Deferred()

            def stopService(self):
                Service.stopService(self)
                stops.append(self.name)
                return self.done

        parent = services.StopInOrder()
        first, second = Slow("first"), Slow("second")
        first.setServiceParent(parent)
        second.setServiceParent(parent)
        parent.startService()
        stopped = parent.stopService()
        self.assertEqual(stops, ["second"])
        second.done.callback(None)
        self.assertEqual(stops, ["second", "first"])
        self.assertNoResult(stopped)
        first.done.callback(None)
        self.successResultOf(stopped)


class PerClientLimitTests(SynchronousTestCase):
    """
    --max-connections-per-client reaches the listener of the upper, reverse
    and backend roles (the relay's and ack's tests are with their roles').
    """

    def test_upper(self):
        """The upper server refuses the 41st TCP connection from one address, not another's."""
        reactor, service = start(services.upper_service, parse("upper", "--no-udp", *LIMITS))
        assert_per_client_limit(self, reactor.tcpServers[0][1])

    def test_reverse(self):
        """The reverse proxy refuses the 41st connection from one address, not another's."""
        reactor, service = start(services.reverse_service, parse("reverse", *LIMITS))
        assert_per_client_limit(self, reactor.tcpServers[0][1])

    def test_server(self):
        """The backend server refuses the 41st connection from one address, not another's."""
        options = parse("server", "--id", "1", "--pp", "PP_1", "--listen", "7000", *LIMITS)
        service = services.server_service(options.subOptions, UDPMemoryReactor())
        assert_per_client_limit(self, service.factory)
