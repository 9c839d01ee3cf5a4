# -*- test-case-name: tests.socks.test_service,tests.test_tap -*-
"""
The SOCKS role's service, built from its checked options
(L{netproxy.socks.options.SocksOptions}): the listeners, the access log,
reloads on SIGHUP and the metrics page.
"""

from typing import Any

from twisted.application.service import IService, MultiService

from netproxy.socks.options import SocksOptions


def socks_service(options: SocksOptions, reactor: Any) -> IService:
    """
    The SOCKS role on every C{--listen}, reloading C{--blocklist},
    C{--auth-file} and this host's addresses (unless C{--allow-local}) on
    SIGHUP, with its metrics on C{--metrics} when given.

    With C{--workers} above 1, the first worker serves the metrics page,
    showing the whole service's counts.

    :param reactor: the reactor, to listen and connect with and as the clock.
    """
    from twisted.application import strports
    from twisted.web.server import Site

    from netproxy.connections import listening
    from netproxy.metrics_page import MetricsPage
    from netproxy.reload import ReloadOnHangup
    from netproxy.socks.protocol import SocksFactory

    service = MultiService()
    factory = SocksFactory(reactor, options["allow"], options["rules"], options["connect-timeout"],
                           options["handshake-timeout"], options["tunnel-idle-timeout"], options["idle-timeout"])
    factory.max_connections = options["max-connections"]
    factory.max_connections_per_client = options["max-connections-per-client"]
    factory.udp = not options["no-udp"]
    worker = options["worker"]
    if options["access-log"]:
        from netproxy.socks.access_log import open_access_log

        factory.access_log.add_observer(open_access_log(options["access-log"]))
        factory.access_log.worker = worker
    reloaders = [options["rules"].reload] if options["blocklist"] else []
    if not options["allow-local"]:
        from netproxy.this_host import LocalDestinations

        factory.local = LocalDestinations()
        reloaders.append(factory.local.reload)
    if options["auth"] is not None:
        from netproxy.http.auth import ProxyAuth

        factory.auth = ProxyAuth(options["auth"], reactor)
        reloaders.append(options["auth"].reload)
    if reloaders:
        # Before the listeners, so SIGHUP is handled as soon as they listen.
        reload: IService = ReloadOnHangup(reloaders, reactor)
        reload.setServiceParent(service)
    metrics = factory.metrics
    stalls: IService = metrics.stalls
    stalls.setServiceParent(service)
    if worker is not None:
        metrics.share(worker, reactor).setServiceParent(service)
    if options["metrics"] is not None and (worker is None or worker.index == 0):
        site = Site(MetricsPage(metrics.registry, lambda: metrics.page()))
        site.noisy = False
        page: IService = strports.service(options["metrics"], site, reactor=reactor)
        page.setServiceParent(service)
    listening(factory, options["listen"], reactor, options["shutdown-timeout"],
              factory.listening.add).setServiceParent(service)
    return service
