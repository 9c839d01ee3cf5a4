# -*- test-case-name: tests.test_role_options,tests.test_tap -*-
"""
The options every listening role shares: how long a peer may idle, how many
peers are served at once in all and from one client, how long work in
flight may take after C{SIGTERM}; and what one connection of the role costs
in file descriptors, for the open-file limit fitted at start-up.  And the
access options of the proxies (L{AccessOptions}): which clients may use
them and which destinations they refuse.

L{netproxy.tap} builds each role's options on L{ListeningOptions}.
"""

from typing import Protocol

from twisted.python import usage

from netproxy import coerce
from netproxy.connections import DEFAULT_MAX_CONNECTIONS


class _Limit(Protocol):
    def fit(self, connections: int, per_connection: int, fixed: int = 0) -> int: ...


class ListeningOptions(usage.Options):
    """
    Options every listening role has: idle timeout, connection limits and
    shutdown timeout.

    :cvar descriptors_per_connection: the file descriptors one connection
        takes (see L{netproxy.descriptors}).
    :cvar descriptors_fixed: those the role holds besides.
    """

    descriptors_per_connection = 1
    descriptors_fixed = 0

    optParameters = [
        ["idle-timeout", None, "30", "seconds without traffic before a peer is disconnected"],
        ["max-connections", None, str(DEFAULT_MAX_CONNECTIONS), "most peers served at once; more are refused"],
        ["max-connections-per-client", None, None,
         "most peers served at once from one client address (every unix-socket peer is the one client 'unix'); "
         "default: a quarter of --max-connections"],
        ["shutdown-timeout", None, "10", "seconds work in flight may take to finish after SIGTERM"],
    ]

    def postOptions(self) -> None:
        self["idle-timeout"] = coerce.seconds("idle-timeout", self["idle-timeout"])
        self["shutdown-timeout"] = coerce.seconds("shutdown-timeout", self["shutdown-timeout"])
        self["max-connections"] = coerce.count("max-connections", self["max-connections"])
        if self["max-connections-per-client"] is not None:
            self["max-connections-per-client"] = coerce.count("max-connections-per-client",
                                                              self["max-connections-per-client"])

    def fit_descriptors(self, limit: _Limit) -> None:
        """
        Fit the open-file limit to C{--max-connections}, before the role is
        built: C{--max-connections} becomes what the limit holds, lower when
        the hard limit is too low.

        :param limit: a L{netproxy.descriptors.DescriptorLimit}.
        """
        self["max-connections"] = limit.fit(self["max-connections"], self.descriptors_per_connection,
                                            self.descriptors_fixed)


class AccessOptions(usage.Options):
    """
    The repeatable options of a proxy's access control, meaning the same in
    every proxy role: C{--allow} (client networks) and C{--block}
    (destination rules), with the C{--listen} list they are given beside.
    Each rule is checked as it is read; the role's C{postOptions} makes the
    lists into rule sets, and its own C{opt_listen} names its default port.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self["listen"] = []
        self["allow"] = []
        self["block"] = []

    def opt_allow(self, rule: str) -> None:
        """
        client network allowed to use the proxy, or unix (default: loopback and unix); may be repeated
        """
        self["allow"].append(coerce.rule("allow", rule))

    def opt_block(self, rule: str) -> None:
        """
        block destinations matching RULE (IP, CIDR, *:port, ip:port, host, *.domain); may be repeated
        """
        self["block"].append(coerce.rule("block", rule))
