# -*- test-case-name: tests.message.test_options,tests.test_tap -*-
"""
The options of the message roles (relay, ack, upper, reverse, server): each
checks and converts its values, so a bad one stops start-up with a message
naming the option, and L{netproxy.message.services} builds the role from
them.
"""

from twisted.python import usage

from netproxy import coerce
from netproxy.acl import RuleSet
from netproxy.message.codec import DEFAULT_MAX_SIZE
from netproxy.redis_client import parse_redis_url
# Every listening role's options (idle and connection limits) build on these.
from netproxy.role_options import ListeningOptions as _ServerOptions
from netproxy.worker_options import WorkerOptions


# The most servers a table shared in Redis may hold (see ReverseOptions).
MAX_SHARED_SERVERS = 65536


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


class ReverseOptions(WorkerOptions, _ServerOptions):
    """
    C{twistd netproxy reverse}.
    """

    descriptors_per_connection = 2

    synopsis = ("[--port 5000 | --listen ENDPOINT] [--allow-servers CIDR]... [--max-servers 1024] [--max-tries 3] "
                "[--registry redis://HOST:PORT/DB [--workers N]]")
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
        ["registry", None, "memory",
         "where the switching table lives: memory (this process only), or redis://HOST[:PORT][/DB] "
         "shared by every reverse proxy using it"],
        ["lease", None, "10",
         "with a shared --registry, seconds a registration lives unless renewed (its lifeline open, "
         "or its server answering)"],
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
        self["listen"] = self.listen_endpoints([self["listen"]])[0]
        if self["metrics"] is not None:
            self["metrics"] = coerce.listen_endpoint("metrics", self["metrics"])
        for name in ("connect-timeout", "timeout", "retry", "setup-grace"):
            self[name] = coerce.seconds(name, self[name])
        for name in ("max-servers", "max-servers-per-host", "max-tries"):
            self[name] = coerce.count(name, self[name])
        self["max-size"] = coerce.size("max-size", self["max-size"])
        loopback = [coerce.rule("allow-servers", "127.0.0.0/8"), coerce.rule("allow-servers", "::1")]
        self["allow-servers"] = RuleSet(self["allow-servers"] or loopback)
        self["registry"] = None if self["registry"] == "memory" else parse_redis_url("registry", self["registry"])
        self["lease"] = coerce.seconds("lease", self["lease"])
        # Leases are renewed every second, and a renewal finds the leases
        # that ended first: one of a second or so would end at about the
        # renewal that should keep it.  Three leave two renewals to spare.
        if self["lease"] < 3:
            raise usage.UsageError(f"--lease: expected at least 3 seconds, got {self['lease']!r}")
        # A renewal reads the whole shared table back, about ten reply
        # elements a server: past this many servers it would outgrow what
        # the Redis client accepts in one reply.
        if self["registry"] is not None and self["max-servers"] > MAX_SHARED_SERVERS:
            raise usage.UsageError(f"--max-servers: at most {MAX_SHARED_SERVERS} with a shared --registry, "
                                   f"got {self['max-servers']}")
        if self["workers"] > 1 and self["registry"] is None:
            raise usage.UsageError("--workers above 1 needs a shared --registry (redis://HOST:PORT/DB): with the "
                                   "table in memory, each worker would have servers and a rotation of its own")
        if self["workers"] > 1 and self["metrics"] is not None:
            raise usage.UsageError("--metrics cannot be used with --workers above 1: each worker would serve "
                                   "its own figures on the one port")


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
