# -*- test-case-name: tests.http.test_options,tests.test_tap -*-
"""
The HTTP proxy's options: C{twistd netproxy http --help}.  Each value is
checked and converted here, so a bad one stops start-up with a message
naming the option; L{netproxy.http.service} builds the proxy from them.
"""

import os
import re

from twisted.python import usage

from netproxy import coerce
from netproxy.acl import RuleSet
from netproxy.http.passwords import auth_file_option
from netproxy.role_options import AccessOptions, ListeningOptions
from netproxy.worker_options import WorkerOptions

# An HTTP token (RFC 9110 section 5.6.2), as a Via pseudonym must be.
_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}")


class HttpOptions(WorkerOptions, ListeningOptions, AccessOptions):
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
        # Parent proxies.
        ["via-name", None, None, "the name this proxy gives itself in Via, and by which it knows a forwarding loop "
                                 "(default: netproxy, or with --parent netproxy- and a hash of the host name and "
                                 "--listen, so that stacked instances differ)"],
        # Range requests.
        ["range-offset-limit", None, "16M", "a range request that misses, starting at most SIZE bytes in, fetches the "
                                            "whole response (stored if at most SIZE or the range runs to its end); "
                                            "further in, it goes upstream untouched; 0 never, none always"],
        # PAC file and rate limits.
        ["pac-file", None, None, "serve FILE as /proxy.pac and /wpad.dat to the clients of --allow; re-read on "
                                 "SIGHUP (default: a generated file sending everything to this proxy)"],
        ["rate-limit", None, None, "most bytes per second each client address may move, both ways and all its "
                                   "connections together, like 512K or 1M (default: no limit)"],
        ["max-requests-rate", None, None, "most requests per second each client address may make, with a burst "
                                          "of one second's worth; past it 429 with Retry-After (default: no limit)"],
        # Refresh patterns.
        ["refresh-patterns", None, None, "file of --refresh-pattern rules, one per line, # comments, after those "
                                         "of --refresh-pattern; re-read on SIGHUP"],
    ]
    optFlags = [
        ["no-cache", None, "forward every request; store nothing"],
        ["allow-local", None, "allow destinations on this host or its link (loopback, 0.0.0.0/8, ::, link-local, "
                              "this host's addresses), refused by default; for development, tests and benchmarks"],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["connect-port"] = []
        self["admin"] = []
        self["parent"] = []
        self["direct"] = []
        self["refresh-pattern"] = []

    def opt_listen(self, endpoint: str) -> None:
        """
        endpoint to listen on (default tcp:8080:interface=127.0.0.1); may be repeated
        """
        self["listen"].append(endpoint)

    def opt_admin(self, rule: str) -> None:
        """
        client network allowed to PURGE and see /metrics, or unix (default: loopback and unix); may be repeated
        """
        self["admin"].append(coerce.rule("admin", rule))

    def opt_connect_port(self, port: str) -> None:
        """
        port CONNECT tunnels may reach (default 443); may be repeated
        """
        self["connect-port"].append(coerce.port_number("connect-port", port))

    def opt_parent(self, url: str) -> None:
        """
        send requests through the parent proxy http:// or socks5://[user:pass@]host:port (credentials %-encoded); may be repeated
        """
        from netproxy.http.parents import parse_parent

        try:
            parent = parse_parent(url)
        except ValueError as error:
            raise usage.UsageError(f"--parent: {error}")
        if any(known.name == parent.name for known in self["parent"]):
            raise usage.UsageError(f"--parent: {parent.name} is given twice")
        self["parent"].append(parent)

    def opt_direct(self, rule: str) -> None:
        """
        destinations matching RULE (the syntax of --block) bypass the parent proxies; may be repeated
        """
        self["direct"].append(coerce.rule("direct", rule))

    def opt_refresh_pattern(self, rule: str) -> None:
        """
        heuristic freshness as Squid's refresh_pattern: '[-i] REGEX MIN PERCENT MAX' (minutes); may be repeated
        """
        from netproxy.http.cache.refresh import parse_rule

        try:
            self["refresh-pattern"].append(parse_rule(rule))
        except ValueError as error:
            raise usage.UsageError(f"--refresh-pattern: {error}")

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
        self["auth"] = auth_file_option(self["auth-file"])
        self["cache-size"] = coerce.size("cache-size", self["cache-size"])
        # systemd's CacheDirectory= sets CACHE_DIRECTORY (a list when several).
        self["cache-dir"] = self["cache-dir"] or os.environ.get("CACHE_DIRECTORY", "").split(":")[0] or "netproxy-cache"
        # Parent proxies.
        self["direct"] = RuleSet(self["direct"])
        self["via-name"] = _via_name(self["via-name"], bool(self["parent"]), self["listen"])
        # Range requests.
        self["range-offset-limit"] = _range_offset_limit(self["range-offset-limit"])
        # PAC file and rate limits.
        self["pac"] = _pac_file(self["pac-file"])
        if self["rate-limit"] is not None:
            self["rate-limit"] = coerce.size("rate-limit", self["rate-limit"])
        if self["max-requests-rate"] is not None:
            self["max-requests-rate"] = _per_second("max-requests-rate", self["max-requests-rate"])
        for option in ("rate-limit", "max-requests-rate"):
            if self[option] is not None and self["workers"] > 1:
                # Each worker would keep buckets of its own: a client would get
                # up to --workers times its rate.
                raise usage.UsageError(f"--{option}: not available with --workers above 1 (the limits are kept "
                                       f"in one process)")
        # Refresh patterns.
        self["refresh"] = _refresh_patterns(self["refresh-pattern"], self["refresh-patterns"])


def _via_name(name: str | None, parents: bool, listen: list[str]) -> bytes:
    """
    The Via pseudonym: as given, or C{netproxy} for a proxy without
    parents, or one of its own for a proxy with parents, which may be the
    child of another netproxy (a request carrying the child's name would
    otherwise be a loop to the parent).  Derived from the host name and the
    listening addresses, it is the same for every worker and across
    restarts, and differs between instances on one host.
    """
    if name is None:
        if not parents:
            return b"netproxy"
        import hashlib
        import socket

        seed = "\n".join([socket.gethostname(), *listen]).encode("utf-8", "replace")
        return b"netproxy-" + hashlib.blake2b(seed, digest_size=4).hexdigest().encode("ascii")
    if not _TOKEN.fullmatch(name):
        raise usage.UsageError(f"--via-name: expected an HTTP token (letters, digits and !#$%&'*+-.^_`|~), "
                               f"got {name!r}")
    return name.encode("ascii")


def _refresh_patterns(fixed, path):
    from netproxy.http.cache.refresh_file import RefreshPatterns

    try:
        return RefreshPatterns(fixed, path)
    except ValueError as error:
        raise usage.UsageError(f"--refresh-patterns: {error}")


def _range_offset_limit(value):
    if value in ("none", "0"):
        return None if value == "none" else 0
    try:
        return coerce.size("range-offset-limit", value)
    except usage.UsageError:
        raise usage.UsageError(f"--range-offset-limit: expected a size like 16M, 0 or none, got {value!r}") from None


def _pac_file(path):
    if path is None:
        return None
    from netproxy.errors import PacFileError
    from netproxy.http.pac import PacFile

    try:
        return PacFile(path)
    except PacFileError as error:
        raise usage.UsageError(f"--pac-file: {error}")


def _per_second(option: str, value: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not 0 < number < float("inf"):
        raise usage.UsageError(f"--{option}: expected a number of requests per second like 10 or 0.5, got {value!r}")
    return number
