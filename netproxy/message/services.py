# -*- test-case-name: tests.message.test_services -*-
"""
The services of the message roles, built from their parsed options: the
relay, the ack and upper servers, the reverse proxy and the backend server.

L{netproxy.tap} parses and checks the options (one C{usage.Options} per
role) and calls the builder of the role named; each builder here takes those
options, as a mapping of option name to checked value, and the reactor, and
returns the role's service with its listeners, graceful drain and reloads.
"""

from collections.abc import Mapping
from typing import Any

from twisted.application import internet, strports
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.endpoints import HostnameEndpoint, serverFromString
from twisted.web.server import Site

from netproxy.connections import DrainOnStop, listening
from netproxy.message.ack import AckFactory
from netproxy.message.backend import BackendService
from netproxy.message.forwarder import Forwarder
from netproxy.message.redis_registry import RedisRegistry
from netproxy.message.registry import IServerRegistry, ServerRegistry
from netproxy.message.relay import RelayFactory
from netproxy.message.reverse import ReverseFactory
from netproxy.message.reverse_metrics import ReverseMetrics
from netproxy.metrics_page import MetricsPage
from netproxy.message.upper import UpperDatagramProtocol, UpperFactory
from netproxy.redis_client import RedisClient
from netproxy.reload import ReloadOnHangup

# The parsed options of a role: option name (without dashes) -> its value,
# already checked and converted by the role's usage.Options.
RoleOptions = Mapping[str, Any]


def relay_service(options: RoleOptions, reactor: Any) -> IService:
    """
    The relay listening on C{--listen}, reloading C{--blocklist} on SIGHUP.

    :param reactor: the reactor, to listen and connect with and as the clock.
    """
    rules = options["rules"]
    factory = RelayFactory(reactor, rules, options["idle-timeout"], options["connect-timeout"], options["max-size"])
    factory.max_connections = options["max-connections"]
    factory.max_connections_per_client = options["max-connections-per-client"]
    service = MultiService()
    if options["blocklist"]:
        # Before the listener, so SIGHUP is handled as soon as the relay listens.
        reload: IService = ReloadOnHangup([rules.reload], reactor)
        reload.setServiceParent(service)
    listening(factory, [options["listen"]], reactor, options["shutdown-timeout"]).setServiceParent(service)
    return service


def ack_service(options: RoleOptions, reactor: Any) -> IService:
    """
    The ack server listening on C{--listen}.

    :param reactor: the reactor, to listen with and as the clock.
    """
    factory = AckFactory(reactor, options["reply"].encode("utf-8"), options["idle-timeout"])
    factory.max_connections = options["max-connections"]
    factory.max_connections_per_client = options["max-connections-per-client"]
    return listening(factory, [options["listen"]], reactor, options["shutdown-timeout"])


def upper_service(options: RoleOptions, reactor: Any) -> IService:
    """
    The upper server on C{--tcp} and C{--udp} at C{--interface}.

    :param reactor: the reactor, to listen with and as the clock.
    """
    service = MultiService()
    if options["tcp"] is not None:
        factory = UpperFactory(reactor, options["idle-timeout"])
        factory.max_connections = options["max-connections"]
        factory.max_connections_per_client = options["max-connections-per-client"]
        drain: IService = DrainOnStop(factory, reactor, options["shutdown-timeout"])
        drain.setServiceParent(service)
        tcp = internet.TCPServer(options["tcp"], factory, interface=options["interface"], reactor=reactor)
        tcp.setServiceParent(service)
    if options["udp"] is not None:
        udp = internet.UDPServer(options["udp"], UpperDatagramProtocol(), interface=options["interface"],
                                 reactor=reactor)
        udp.setServiceParent(service)
    return service


class StopInOrder(MultiService):
    """
    A L{MultiService} whose children stop one after another, the last
    added first, each once the one after it has stopped.
    """

    def __init__(self) -> None:
        MultiService.__init__(self)

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)
        return self._stop_next(None, list(self))

    def _stop_next(self, ignored: object, children: list[IService]) -> "Deferred[None]":
        if not children:
            return succeed(None)
        child = children.pop()
        stopping: Deferred[Any] = maybeDeferred(child.stopService)
        return stopping.addCallback(self._stop_next, children)


def reverse_service(options: RoleOptions, reactor: Any) -> IService:
    """
    The reverse proxy listening on C{--listen}, and its metrics page on
    C{--metrics} when given.

    :param reactor: the reactor, to listen and connect with and as the clock.
    """
    registry: IServerRegistry
    shared: RedisRegistry | None = None
    if options["registry"] is None:
        registry = ServerRegistry(reactor, first_retry=options["retry"], max_servers=options["max-servers"],
                                  max_per_host=options["max-servers-per-host"])
    else:
        registry = shared = RedisRegistry(reactor, RedisClient(reactor, options["registry"]),
                                          first_retry=options["retry"], max_servers=options["max-servers"],
                                          max_per_host=options["max-servers-per-host"], lease=options["lease"])
    forwarder = Forwarder(reactor, registry, options["connect-timeout"], options["timeout"], options["max-size"],
                          options["max-tries"])
    factory = ReverseFactory(reactor, registry, forwarder, options["idle-timeout"], options["setup-grace"],
                             options["max-size"], options["allow-servers"])
    factory.max_connections = options["max-connections"]
    factory.max_connections_per_client = options["max-connections-per-client"]
    service = listening(factory, [options["listen"]], reactor, options["shutdown-timeout"])
    if shared is not None:
        # The listeners drain first, so lifelines closed by a shutdown are
        # still removed from Redis; the registry stops after them.
        outer = StopInOrder()
        registry_service: IService = shared
        registry_service.setServiceParent(outer)
        service.setServiceParent(outer)
        service = outer
    if options["metrics"] is not None:
        metrics = ReverseMetrics(registry, forwarder)
        stalls: IService = metrics.stalls
        stalls.setServiceParent(service)
        site = Site(MetricsPage(metrics.registry))
        site.noisy = False
        strports.service(options["metrics"], site, reactor=reactor).setServiceParent(service)
    return service


def server_service(options: RoleOptions, reactor: Any) -> IService:
    """
    The backend server on C{--listen}, registered with C{--revproc}.

    :param reactor: the reactor, to listen and connect with and as the clock.
    """
    registrar = HostnameEndpoint(reactor, options["revproc-host"], options["revproc"], timeout=5)
    service = BackendService(reactor, serverFromString(reactor, options["listen"]), registrar, options["id"],
                             options["pp"], options["revproc"], options["idle-timeout"], options["max-size"],
                             shutdown_timeout=options["shutdown-timeout"])
    service.factory.max_connections = options["max-connections"]
    service.factory.max_connections_per_client = options["max-connections-per-client"]
    return service
