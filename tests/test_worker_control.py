"""
Tests for L{netproxy.worker_control}: a worker listens on what it inherited
and reports to its main process.
"""

import socket

from twisted.internet.endpoints import AdoptedStreamServerEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from netproxy.proxy_protocol import ProxiedEndpoint
from netproxy.systemd import SystemdNotifier
from netproxy.worker_control import (
    ACCEPTS_PER_WAKE,
    MainProcessLink,
    SharedSocketEndpoint,
    adopted_endpoints,
    serve_as_worker,
)
from netproxy.worker_options import Worker

WORKER = Worker(1, 2, ((4, "INET"), (5, "INET6")), (0, 3), "/run/netproxy-workers-test")


class StoppableReactor(MemoryReactorClock):
    def __init__(self):
        super().__init__()
        self.stops = 0

    def stop(self):
        self.stops += 1


class EndpointTests(SynchronousTestCase):
    """
    A worker adopts each inherited socket, in --listen order.
    """

    def test_adopted(self):
        """
        One adopting endpoint per socket, with its descriptor and family.
        """
        reactor = MemoryReactorClock()
        endpoints = adopted_endpoints(WORKER, reactor)
        self.assertEqual([(type(endpoint), endpoint.fileno, endpoint.addressFamily) for endpoint in endpoints],
                         [(SharedSocketEndpoint, 4, socket.AF_INET),
                          (SharedSocketEndpoint, 5, socket.AF_INET6)])
        self.assertTrue(all(isinstance(endpoint, AdoptedStreamServerEndpoint) for endpoint in endpoints))

    def test_accepts_shared(self):
        """
        A port on an inherited socket accepts at most ACCEPTS_PER_WAKE connections per wake-up, where Twisted's
        would take up to 100 and more: a burst is left to the other workers too.
        """
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listening.close)
        listening.bind(("127.0.0.1", 0))
        listening.listen(50)
        listening.setblocking(False)
        clients = []
        for _ in range(10):
            client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.addCleanup(client.close)
            client.connect(listening.getsockname())
            clients.append(client)
        from twisted.internet import reactor
        endpoint = SharedSocketEndpoint(reactor, listening.fileno(), socket.AF_INET)
        accepted = []

        protocols = []

        class Counting(Factory):
            def buildProtocol(self, addr):
                accepted.append(addr)
                protocols.append(Protocol())
                return protocols[-1]

        def close_accepted():
            # The accepted connections and the port are in the global
            # reactor, which no synchronous test runs: close them here, or
            # a later test's reactor finds their descriptors reused.
            for protocol in protocols:
                protocol.transport.connectionLost(Failure(ConnectionDone()))

        port = self.successResultOf(endpoint.listen(Counting()))
        # The port adopted a copy of the socket and closed the original's
        # descriptor, which the socket object must no longer close.
        listening.detach()
        self.addCleanup(port.connectionLost, Failure(ConnectionDone()))
        self.addCleanup(close_accepted)
        port.doRead()
        self.assertEqual(len(accepted), ACCEPTS_PER_WAKE)
        port.doRead()
        self.assertEqual(len(accepted), 2 * ACCEPTS_PER_WAKE)

    def test_serve_as_worker(self):
        """
        The options' --listen becomes the inherited sockets (a list for http, one for the relay), the link is on the control descriptors, and the notifier reports to it.
        """
        reactor = MemoryReactorClock()
        linked = []

        def link_pipes(protocol, stdin, stdout, reactor):
            linked.append((protocol, stdin, stdout))

        http = {"worker": WORKER, "listen": ["systemd:domain=INET:index=0", "tcp:1"]}
        notifier = serve_as_worker(http, reactor, link_pipes)
        self.assertEqual([endpoint.fileno for endpoint in http["listen"]], [4, 5])
        [(link, stdin, stdout)] = linked
        self.assertEqual((stdin, stdout), (0, 3))
        self.assertIsInstance(notifier, SystemdNotifier)
        self.assertIs(notifier.socket, link)
        self.assertIsNone(notifier.watchdog_interval)
        relay = {"worker": Worker(0, 2, ((7, "INET"),), (0, 3), "/run/netproxy-workers-test"), "listen": "tcp:6000"}
        serve_as_worker(relay, reactor, link_pipes)
        self.assertEqual(relay["listen"].fileno, 7)

    def test_worker_behind_haproxy(self):
        """
        An inherited socket opened for a haproxy: --listen reads PROXY headers in the worker too.
        """
        reactor = MemoryReactorClock()
        http = {"worker": WORKER, "listen": ["haproxy:tcp:8081:interface=127.0.0.1", "tcp:1"]}
        serve_as_worker(http, reactor, lambda protocol, stdin, stdout, reactor: None)
        proxied, plain = http["listen"]
        self.assertIsInstance(proxied, ProxiedEndpoint)
        self.assertEqual(proxied.endpoint.fileno, 4)
        self.assertIsInstance(plain, SharedSocketEndpoint)


class LinkTests(SynchronousTestCase):
    """
    The worker's link to its main process.
    """

    def setUp(self):
        self.reactor = StoppableReactor()
        self.link = MainProcessLink(self.reactor)

    def test_reports_end_with_nul(self):
        """
        Each message goes down the pipe as UTF-8 ended by a NUL byte.
        """
        transport = StringTransport()
        self.link.makeConnection(transport)
        self.link.send("READY=1")
        self.link.send("RELOADING=1\nMONOTONIC_USEC=5")
        self.assertEqual(transport.value(), b"READY=1\0RELOADING=1\nMONOTONIC_USEC=5\0")

    def test_not_connected(self):
        """
        Sending before the link is connected does nothing.
        """
        self.link.send("READY=1")

    def test_main_process_gone(self):
        """
        End of file from the main process stops the worker's reactor, once.
        """
        self.link.makeConnection(StringTransport())
        self.link.dataReceived(b"ignored")
        self.link.connectionLost()
        self.link.connectionLost()
        self.assertEqual(self.reactor.stops, 1)

    def test_closed_while_stopping(self):
        """
        Once the worker stops (STOPPING=1 sent), the pipes closing is no news.
        """
        self.link.makeConnection(StringTransport())
        self.link.close_when_sent()
        self.link.connectionLost()
        self.assertEqual(self.reactor.stops, 0)

    def test_reactor_already_stopped(self):
        """
        A reactor that has stopped already is left alone.
        """
        reactor = MemoryReactorClock()
        link = MainProcessLink(reactor)
        link.makeConnection(StringTransport())
        link.connectionLost()
        self.assertFalse(reactor.running)
