# -*- test-case-name: tests.test_tap,tests.message.test_services -*-
"""
The twistd plugin's options and services: C{twistd netproxy ROLE [options]}.

One L{usage.Options} per role checks and converts every value (a bad one
stops start-up with a message naming the option); L{makeService} hands the
checked options to the role's builder (L{netproxy.message.services} for the
message roles) and puts the shared SIGTERM and systemd services around it.

twistd imports this module to list its commands: each builder imports late.
"""

import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.python import usage

from netproxy import coerce
from netproxy.cli import ClientOptions, ClientRunService
from netproxy.acl import RuleSet
from netproxy.message.codec import DEFAULT_MAX_SIZE
# Every listening role's options (idle and connection limits) build on these.
from netproxy.role_options import ListeningOptions as _ServerOptions
from netproxy.worker_options import WorkerOptions


class RelayOptions(WorkerOptions, _ServerOptions):
    """
    C{twistd netproxy relay}.
    """

    descriptors_per_connection = 2

    synopsis = "[--listen ENDPOINT] [--block RULE]... [--blocklist FILE]"
    longdesc = ("Relay each JSON request {server_ip, server_port, message} to its "
                "destination unless a rule blocks it; reply bytes come back as they arrive.")
    optParameters = [
        ["listen", "l", "tcp:6000:interface=127.0.0.1", "endpoint to listen on (a bare port means 127.0.0.1)"],
        ["blocklist", None, None, "file of blocking rules, one per line, # comments; re-read on SIGHUP"],
        ["connect-timeout", None, "10", "seconds to wait for a destination to accept"],
        ["max-size", None, str(DEFAULT_MAX_SIZE), "largest request accepted, in bytes (64K, 1M ...)"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["block"] = []

    def opt_block(self, rule: str) -> None:
        """
        block destinations matching RULE (IP, CIDR, *:port, ip:port, host, *.domain); may be repeated
        """
        self["block"].append(coerce.rule("block", rule))

    def postOptions(self) -> None:
        super().postOptions()
        self["listen"] = self.listen_endpoints([self["listen"]])[0]
        self["connect-timeout"] = coerce.seconds("connect-timeout", self["connect-timeout"])
        self["max-size"] = coerce.size("max-size", self["max-size"])
        self["rules"] = coerce.rules_file("blocklist", self["block"], self["blocklist"])


class AckOptions(_ServerOptions):
    """
    C{twistd netproxy ack}.
    """

    synopsis = "[--listen ENDPOINT] [--reply TEXT]"
    longdesc = "Answer every chunk of data received with a fixed reply (DONE)."
    optParameters = [
        ["listen", "l", "tcp:8888:interface=127.0.0.1", "endpoint to listen on (a bare port means 127.0.0.1)"],
        ["reply", "r", "DONE", "the text answered to every chunk"],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["listen"] = coerce.listen_endpoint("listen", self["listen"])


class UpperOptions(_ServerOptions):
    """
    C{twistd netproxy upper}.
    """

    synopsis = "[--tcp PORT] [--udp PORT] [--interface ADDRESS] [--no-tcp | --no-udp]"
    longdesc = "Send back every byte received with a-z upper-cased, over TCP and UDP."
    optFlags = [["no-tcp", None, "do not listen on TCP"], ["no-udp", None, "do not listen on UDP"]]
    optParameters = [
        ["tcp", None, "12000", "TCP port to listen on"],
        ["udp", None, "12000", "UDP port to listen on"],
        ["interface", "i", "127.0.0.1", "address to listen on"],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        self["tcp"] = None if self["no-tcp"] else coerce.listen_port("tcp", self["tcp"])
        self["udp"] = None if self["no-udp"] else coerce.listen_port("udp", self["udp"])
        if self["tcp"] is None and self["udp"] is None:
            raise usage.UsageError("--no-tcp and --no-udp together leave nothing to serve")


class ReverseOptions(_ServerOptions):
    """
    C{twistd netproxy reverse}.
    """

    descriptors_per_connection = 2

    synopsis = "[--port 5000 | --listen ENDPOINT] [--allow-servers CIDR]... [--max-servers 1024] [--max-tries 3]"
    longdesc = ("Message reverse proxy: servers register themselves (type 1 setup), client data "
                "messages (type 0) go round-robin to the servers of their privacy policy.")
    optParameters = [
        ["listen", "l", "tcp:5000:interface=127.0.0.1", "endpoint for setups and data messages"],
        ["port", "p", None, "port on 127.0.0.1 to listen on (instead of --listen)"],
        ["connect-timeout", None, "3", "seconds for a server to accept a forwarded message"],
        ["timeout", "t", "10", "seconds for a server to answer a forwarded message"],
        ["retry", None, "1", "seconds before a server that failed is tried again (doubling, up to 30)"],
        ["setup-grace", None, "1", "a server closing its setup connection within this many seconds stays registered"],
        ["max-size", None, str(DEFAULT_MAX_SIZE), "largest message accepted, in bytes (64K, 1M ...)"],
        ["max-servers", None, "1024", "most servers registered at once; further setups are refused"],
        ["max-servers-per-host", None, "64", "most servers registered at once from one host; further setups "
                                             "from it are refused"],
        ["max-tries", None, "3", "most servers one message is sent to before the client gets an error"],
        ["metrics", None, None,
         "endpoint serving GET /metrics (Prometheus text format), e.g. tcp:9105:interface=127.0.0.1"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["allow-servers"] = []

    def opt_allow_servers(self, network: str) -> None:
        """
        network whose hosts may register servers (default: loopback only); may be repeated
        """
        rule = coerce.rule("allow-servers", network)
        if rule.name is not None or rule.port is not None:
            raise usage.UsageError(f"--allow-servers: expected an address or a network like 10.0.0.0/8, "
                                   f"got {network!r}")
        self["allow-servers"].append(rule)

    def postOptions(self) -> None:
        super().postOptions()
        if self["port"] is not None:
            self["listen"] = coerce.listen_endpoint("port", self["port"])
        self["listen"] = coerce.listen_endpoint("listen", self["listen"])
        if self["metrics"] is not None:
            self["metrics"] = coerce.listen_endpoint("metrics", self["metrics"])
        for name in ("connect-timeout", "timeout", "retry", "setup-grace"):
            self[name] = coerce.seconds(name, self[name])
        for name in ("max-servers", "max-servers-per-host", "max-tries"):
            self[name] = coerce.count(name, self[name])
        self["max-size"] = coerce.size("max-size", self["max-size"])
        loopback = [coerce.rule("allow-servers", "127.0.0.0/8"), coerce.rule("allow-servers", "::1")]
        self["allow-servers"] = RuleSet(self["allow-servers"] or loopback)


class ServerOptions(_ServerOptions):
    """
    C{twistd netproxy server}.
    """

    synopsis = "--id ID --pp POLICY --listen PORT --revproc PORT [--revproc-host 127.0.0.1]"
    longdesc = ("Backend server: registers with a reverse proxy and answers each data message "
                "with the SHA-1 of its payload.")
    optParameters = [
        ["id", None, None, "this server's id"],
        ["pp", None, None, "the privacy policy it serves (PP_1 ...)"],
        ["listen", "l", None, "port (on 127.0.0.1) or endpoint to take data messages on"],
        ["revproc", None, "5000", "the reverse proxy's port"],
        ["revproc-host", None, "127.0.0.1", "the reverse proxy's host"],
        ["max-size", None, str(DEFAULT_MAX_SIZE), "largest message accepted, in bytes (64K, 1M ...)"],
    ]

    def postOptions(self) -> None:
        super().postOptions()
        for name in ("id", "pp", "listen"):
            if not self[name]:
                raise usage.UsageError(f"--{name} is required")
        # Ids travel as numbers when they look like numbers, as the peers' own messages carry them.
        self["id"] = int(self["id"]) if self["id"].isascii() and self["id"].isdigit() else self["id"]
        self["listen"] = coerce.listen_endpoint("listen", self["listen"])
        self["revproc"] = coerce.port_number("revproc", self["revproc"])
        self["max-size"] = coerce.size("max-size", self["max-size"])


class HttpOptions(WorkerOptions, _ServerOptions):
    """
    C{twistd netproxy http}.
    """

    # The client, the origin, a cache file; and the pool's idle connections.
    descriptors_per_connection = 3
    descriptors_fixed = 1024

    synopsis = ("[--listen ENDPOINT]... [--allow CIDR]... [--block RULE]... [--blocklist FILE] [--connect-port 443]... "
                "[--auth-file FILE]")
    longdesc = "HTTP/1.1 forward proxy with CONNECT tunnels and access control."
    optParameters = [
        ["blocklist", None, None, "file of destination rules, one per line, # comments; re-read on SIGHUP"],
        ["timeout", "t", "30", "seconds an origin may take to answer (504 after), and a client to send a request (408)"],
        ["connect-timeout", None, "10", "seconds an origin may take to accept a connection"],
        ["access-log", None, None, "write one line per request (Combined Log Format) to FILE, or - for stdout"],
        ["cache-dir", None, None, "directory of the cache (default: $CACHE_DIRECTORY when set, else ./netproxy-cache)"],
        ["cache-size", None, "1G", "most bytes the cache keeps on disk; least recently used entries go first"],
        ["auth-file", None, None, "require proxy authentication by the users of FILE (user:hash lines, bcrypt or "
                                  "SHA-crypt hashes, # comments); re-read on SIGHUP"],
    ]
    optFlags = [
        ["no-cache", None, "forward every request; store nothing"],
        ["allow-local", None, "allow destinations on this host or its link (loopback, 0.0.0.0/8, ::, link-local, "
                              "this host's addresses), refused by default; for development, tests and benchmarks"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["allow"] = []
        self["block"] = []
        self["connect-port"] = []
        self["admin"] = []

    def opt_listen(self, endpoint: str) -> None:
        """
        endpoint to listen on (default tcp:8080:interface=127.0.0.1); may be repeated
        """
        self["listen"].append(endpoint)

    def opt_allow(self, rule: str) -> None:
        """
        client network allowed to use the proxy, or unix (default: loopback and unix); may be repeated
        """
        self["allow"].append(coerce.rule("allow", rule))

    def opt_admin(self, rule: str) -> None:
        """
        client network allowed to PURGE and see /metrics, or unix (default: loopback and unix); may be repeated
        """
        self["admin"].append(coerce.rule("admin", rule))

    def opt_block(self, rule: str) -> None:
        """
        block destinations matching RULE (IP, CIDR, *:port, ip:port, host, *.domain); may be repeated
        """
        self["block"].append(coerce.rule("block", rule))

    def opt_connect_port(self, port: str) -> None:
        """
        port CONNECT tunnels may reach (default 443); may be repeated
        """
        self["connect-port"].append(coerce.port_number("connect-port", port))

    def postOptions(self) -> None:
        super().postOptions()
        self["listen"] = self.listen_endpoints(self["listen"] or ["tcp:8080:interface=127.0.0.1"])
        # This host's clients: loopback, and every client of a unix socket
        # (local, and guarded by the socket file's mode).
        local = [coerce.rule("allow", "127.0.0.0/8"), coerce.rule("allow", "::1"), coerce.rule("allow", "unix")]
        self["allow"] = RuleSet(self["allow"] or local)
        self["admin"] = RuleSet(self["admin"] or local)
        self["connect-port"] = frozenset(self["connect-port"] or [443])
        self["timeout"] = coerce.seconds("timeout", self["timeout"])
        self["connect-timeout"] = coerce.seconds("connect-timeout", self["connect-timeout"])
        self["rules"] = coerce.rules_file("blocklist", self["block"], self["blocklist"])
        self["auth"] = _auth_file(self["auth-file"])
        self["cache-size"] = coerce.size("cache-size", self["cache-size"])
        # systemd's CacheDirectory= sets CACHE_DIRECTORY (a list when several).
        self["cache-dir"] = self["cache-dir"] or os.environ.get("CACHE_DIRECTORY", "").split(":")[0] or "netproxy-cache"


def _auth_file(path):
    if path is None:
        return None
    from netproxy.errors import AuthFileError
    from netproxy.http.passwords import AuthFile

    try:
        return AuthFile(path)
    except AuthFileError as error:
        raise usage.UsageError(f"--auth-file: {error}")


class Options(usage.Options):
    """
    C{twistd netproxy ROLE}: one subcommand per role.
    """

    synopsis = "ROLE [options]"
    longdesc = "netproxy roles. 'twistd netproxy ROLE --help' describes each one."
    subCommands: list[tuple[str, None, type[usage.Options], str]] = [
        ("http", None, HttpOptions, "HTTP/1.1 forward proxy with CONNECT tunnels and access control"),
        ("reverse", None, ReverseOptions, "message reverse proxy with self-registering servers"),
        ("server", None, ServerOptions, "backend server answering messages with their SHA-1"),
        ("relay", None, RelayOptions, "message relay with a destination blocklist"),
        ("ack", None, AckOptions, "answers every message with a fixed reply (DONE)"),
        ("upper", None, UpperOptions, "TCP and UDP server that upper-cases a-z"),
        ("client", None, ClientOptions, "run one client exchange (as netproxy-client does)"),
    ]

    def parseOptions(self, options: list[str] | None = None) -> None:
        self.argv = list(sys.argv[1:] if options is None else options)  # a main process's workers get them too
        super().parseOptions(options)

    def postOptions(self) -> None:
        if self.subCommand is None:
            raise usage.UsageError("name a role: " + ", ".join(name for name, *_ in self.subCommands))


def makeService(options: Options) -> MultiService:
    """
    Build the service of the role named in C{options}.

    :param options: a parsed L{Options}.
    :returns: the role's service, after the SIGTERM handler and before the
        systemd notifier.
    """
    from twisted.internet import reactor as installed

    from netproxy.message import services
    from netproxy.shutdown import ExitCleanlyOnTerm
    from netproxy.workers import role_process

    # Every role uses several of the reactor's interfaces, which no one type names.
    reactor: Any = installed
    builders: dict[str, Callable[[Any, Any], IService]] = {
        "http": http_service, "reverse": services.reverse_service, "server": services.server_service,
        "relay": services.relay_service, "ack": services.ack_service, "upper": services.upper_service,
        "client": lambda options, reactor: ClientRunService(reactor, options),  # one exchange, then it stops
    }
    if isinstance(options.subOptions, _ServerOptions):
        from netproxy.descriptors import DescriptorLimit

        options.subOptions.fit_descriptors(DescriptorLimit())
    service = MultiService()
    # First, so its handler is in place before any listener starts.
    ExitCleanlyOnTerm(reactor).setServiceParent(service)
    # The role itself, or (--workers) the main process of its workers.
    notifier = role_process(options, reactor, service, builders[str(options.subCommand)])
    if options.subCommand != "client":
        # Last, so READY=1 goes out once every listener is up; stopped first,
        # so STOPPING=1 goes out before the listeners close and drain.
        notifier.attach(service)
    return service


def http_service(options: HttpOptions, reactor: Any) -> IService:
    """
    The HTTP proxy on every C{--listen}, reloading C{--blocklist},
    C{--auth-file} and this host's addresses (unless C{--allow-local}) on
    SIGHUP.

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
        cache = responses.Cache(store, reactor)
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
    if reloaders:
        ReloadOnHangup(reloaders, reactor).setServiceParent(service)
    factory.metrics.stalls.setServiceParent(service)
    if options["worker"] is not None:
        factory.metrics.share(options["worker"], reactor).setServiceParent(service)
    listening(factory, options["listen"], reactor, options["shutdown-timeout"],
              factory.listening.add).setServiceParent(service)
    return service
