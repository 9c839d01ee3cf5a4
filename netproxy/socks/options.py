# -*- test-case-name: tests.socks.test_options,tests.test_tap -*-
"""
The SOCKS role's options: C{twistd netproxy socks --help}.  Each value is
checked and converted here, so a bad one stops start-up with a message
naming the option; L{netproxy.socks.service} builds the role from them.
The options it shares with the HTTP proxy (C{--allow}, C{--block},
C{--blocklist}, C{--auth-file}, C{--allow-local}, C{--access-log}) mean the
same there and here.
"""

from netproxy import coerce
from netproxy.acl import RuleSet
from netproxy.http.passwords import auth_file_option
from netproxy.role_options import AccessOptions, ListeningOptions
from netproxy.worker_options import WorkerOptions


class SocksOptions(WorkerOptions, ListeningOptions, AccessOptions):
    """
    C{twistd netproxy socks}.
    """

    # The client and its destination.
    descriptors_per_connection = 2

    synopsis = ("[--listen ENDPOINT]... [--allow CIDR]... [--block RULE]... [--blocklist FILE] [--auth-file FILE] "
                "[--metrics ENDPOINT] [--no-udp]")
    longdesc = ("SOCKS5 proxy (RFC 1928 CONNECT and UDP ASSOCIATE, RFC 1929 username/password login) with the HTTP "
                "proxy's access control.")
    optParameters = [
        ["blocklist", None, None, "file of destination rules, one per line, # comments; re-read on SIGHUP"],
        ["connect-timeout", None, "10", "seconds a destination may take to be resolved and accept a connection "
                                        "(reply 6 after)"],
        ["handshake-timeout", None, "30", "seconds a client may take from connecting to the end of its request"],
        ["tunnel-idle-timeout", None, "900", "seconds a tunnel may carry no byte either way before it is closed"],
        ["access-log", None, None, "write one line per request (client, user, destination, bytes each way, "
                                   "seconds) to FILE, or - for stdout"],
        ["auth-file", None, None, "require a username/password login by the users of FILE (user:hash lines, bcrypt "
                                  "or SHA-crypt hashes, # comments); re-read on SIGHUP"],
        ["metrics", None, None,
         "endpoint serving GET /metrics (Prometheus text format), e.g. tcp:9106:interface=127.0.0.1"],
    ]
    optFlags = [
        ["allow-local", None, "allow destinations on this host or its link (loopback, 0.0.0.0/8, ::, link-local, "
                              "this host's addresses), refused by default; for development, tests and benchmarks"],
        ["no-udp", None, "refuse UDP ASSOCIATE (reply 7): serve CONNECT only"],
    ]

    def opt_listen(self, endpoint: str) -> None:
        """
        endpoint to listen on (default tcp:1080:interface=127.0.0.1); may be repeated
        """
        self["listen"].append(endpoint)

    def postOptions(self) -> None:
        super().postOptions()
        self["listen"] = self.listen_endpoints(self["listen"] or ["tcp:1080:interface=127.0.0.1"])
        local = [coerce.rule("allow", "127.0.0.0/8"), coerce.rule("allow", "::1"), coerce.rule("allow", "unix")]
        self["allow"] = RuleSet(self["allow"] or local)
        for name in ("connect-timeout", "handshake-timeout", "tunnel-idle-timeout"):
            self[name] = coerce.seconds(name, self[name])
        self["rules"] = coerce.rules_file("blocklist", self["block"], self["blocklist"])
        self["auth"] = auth_file_option(self["auth-file"])
        if self["metrics"] is not None:
            self["metrics"] = coerce.listen_endpoint("metrics", self["metrics"])

