# -*- test-case-name: tests.test_tap,tests.message.test_services -*-
"""
The twistd plugin's options and services: C{twistd netproxy ROLE [options]}.

One L{usage.Options} per role checks and converts every value (a bad one
stops start-up with a message naming the option); L{makeService} hands the
checked options to the role's builder (L{netproxy.message.services} for the
message roles, L{netproxy.http.service} for the HTTP proxy,
L{netproxy.socks.service} for the SOCKS proxy) and puts the
shared SIGTERM and systemd services around it.

twistd imports this module to list its commands: each builder imports late.
"""

import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import IService, MultiService
from twisted.python import usage

from netproxy.cli import ClientOptions, ClientRunService
from netproxy.http.options import HttpOptions
from netproxy.message.options import AckOptions, RelayOptions, ReverseOptions, ServerOptions, UpperOptions
from netproxy.role_options import ListeningOptions
from netproxy.socks.options import SocksOptions

__all__ = ["Options", "makeService", "HttpOptions", "AckOptions", "RelayOptions", "ReverseOptions", "ServerOptions",
           "UpperOptions", "SocksOptions"]


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
        ("socks", None, SocksOptions, "SOCKS5 proxy (CONNECT, UDP, username/password login) with access control"),
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

    from netproxy.http.service import http_service
    from netproxy.message import services
    from netproxy.shutdown import ExitCleanlyOnTerm
    from netproxy.socks.service import socks_service
    from netproxy.workers import role_process

    # Every role uses several of the reactor's interfaces, which no one type names.
    reactor: Any = installed
    builders: dict[str, Callable[[Any, Any], IService]] = {
        "http": http_service, "reverse": services.reverse_service, "server": services.server_service,
        "relay": services.relay_service, "ack": services.ack_service, "upper": services.upper_service,
        "client": lambda options, reactor: ClientRunService(reactor, options),  # one exchange, then it stops
        "socks": socks_service,
    }
    if isinstance(options.subOptions, ListeningOptions):
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
