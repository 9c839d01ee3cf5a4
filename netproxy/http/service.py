# -*- test-case-name: tests.http.test_service,tests.test_tap -*-
"""
The HTTP proxy's service, built from its checked options
(L{netproxy.http.options.HttpOptions}): the listeners, the cache and its
store, access log, reloads on SIGHUP and metrics.
"""

from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService

from netproxy.http.options import HttpOptions


def http_service(options: HttpOptions, reactor: Any) -> IService:
    """
    The HTTP proxy on every C{--listen}, reloading C{--blocklist},
    C{--auth-file}, C{--pac-file} and this host's addresses (unless
    C{--allow-local}) on SIGHUP, forwarding through the C{--parent}
    proxies, if any.

    :param reactor: the reactor, to listen and connect with and as the clock.
    """
    from twisted.python.filepath import FilePath

    from netproxy.connections import listening
    from netproxy.http.proxy import ProxyFactory
    from netproxy.reload import ReloadOnHangup

    service, cache = MultiService(), None
    if not options["no-cache"]:
        from netproxy.http.cache import responses, sqlite_store, store_service

        shared = options["worker"] is not None  # the other workers use the directory too
        store = sqlite_store.SQLiteStore(FilePath(options["cache-dir"]), options["cache-size"], reactor, shared=shared)
        store_service.LoadOnStart(store).setServiceParent(service)
        cache = responses.Cache(store, reactor, options["refresh"].rules, options["range-offset-limit"],
                                pseudonym=options["via-name"])
    factory = ProxyFactory(reactor, options["allow"], options["rules"], options["connect-port"], options["timeout"],
                           options["connect-timeout"], cache, options["admin"])
    factory.idle_timeout = options["idle-timeout"]
    factory.max_connections = options["max-connections"]
    factory.pool.max_idle = min(factory.pool.max_idle, factory.max_connections)  # as the file limit was fitted
    factory.max_connections_per_client = options["max-connections-per-client"]
    if options["access-log"]:
        from netproxy.http.access_log import open_access_log

        factory.access_log.add_observer(open_access_log(options["access-log"]))
        factory.access_log.worker = options["worker"]
    reloaders = [options["rules"].reload] if options["blocklist"] else []
    if not options["allow-local"]:
        from netproxy.this_host import LocalDestinations

        factory.local = LocalDestinations()
        reloaders.append(factory.local.reload)
    if options["auth"] is not None:
        from netproxy.http.auth import ProxyAuth

        factory.auth = ProxyAuth(options["auth"], reactor)
        reloaders.append(options["auth"].reload)
    factory.pseudonym = options["via-name"]
    if options["parent"]:
        from netproxy.http.parents import Parents

        factory.parents = Parents(options["parent"], options["direct"], reactor)
        factory.parents.log.info("forwarding through parent proxies {parents} ({direct} --direct rules), "
                                 "as {name} in Via", parents=", ".join(parent.name for parent in options["parent"]),
                                 direct=len(options["direct"]), name=options["via-name"].decode("ascii"))
    if options["pac"] is not None:
        factory.pac_file = options["pac"]
        reloaders.append(options["pac"].reload)
    factory.pac_direct = tuple(options["direct"])
    if options["rate-limit"] is not None or options["max-requests-rate"] is not None:
        from netproxy.rate_limit import RateLimiter

        factory.rate_limiter = RateLimiter(reactor, options["rate-limit"], options["max-requests-rate"])
    if cache is not None and options["refresh-patterns"] is not None:
        reloaders.append(_refresh_reloader(options["refresh"], cache))
    if reloaders:
        ReloadOnHangup(reloaders, reactor).setServiceParent(service)
    factory.metrics.stalls.setServiceParent(service)
    if options["worker"] is not None:
        factory.metrics.share(options["worker"], reactor).setServiceParent(service)
    listening(factory, options["listen"], reactor, options["shutdown-timeout"],
              factory.listening.add).setServiceParent(service)
    return service


def _refresh_reloader(patterns: Any, cache: Any) -> Callable[[], bool]:
    """
    :returns: a reloader re-reading C{--refresh-patterns} and handing the
        cache the rules then in force (the old ones when the file is bad).
    """
    def reload() -> bool:
        reloaded = bool(patterns.reload())
        cache.rules = patterns.rules
        return reloaded

    return reload
