# -*- test-case-name: tests.http.test_loops -*-
"""
Forwarding loops: requests the proxy would send to itself.

The proxy's connection back to itself comes from the proxy's own address,
which is of an C{--admin} network by default (loopback): a looped request
for C{http://PROXY/metrics} would be answered with the proxy's pages, or
PURGE obeyed, for any client.  So a loop is refused before any page or
PURGE is considered, both ways round:

  - on the way out, a destination that is one of the proxy's own listening
    addresses (L{Listening}): by the request's literal address, and by the
    address a name resolves to, since the connection code matches the
    resolved address against the same rules (L{LoopGuard});
  - on the way in, a request that carries netproxy's C{Via}
    (L{netproxy.http.message.is_loop}), whatever address it came by.

The listening addresses are learned from the listening ports as each
starts, so C{--listen} with port 0, sockets systemd hands over and several
C{--listen} all count with the port actually bound.  A port bound to every
address (C{0.0.0.0}, C{::}) answers on all of this host's addresses: it
counts for loopback, for C{0.0.0.0/8} and C{::} (which Linux connects to
this host), and for each address of this host a client reached it by.
"""

from ipaddress import ip_address
from typing import Any

from twisted.internet.interfaces import IAddress, IListeningPort

from netproxy.acl import Rule, RuleSet, parse_rule

# Where a port bound to every address answers, besides the addresses of
# this host that clients reach it by; and what Linux connects to this host
# when it is the destination (issue 11).
_THIS_HOST = ("127.0.0.0/8", "::1", "0.0.0.0/8", "::")
# The most addresses of this host remembered for ports bound to every
# address: a host has a few, and none can be made up by a client.
MAX_LOCAL_ADDRESSES = 64


def _host_port(address: IAddress) -> tuple[str, int] | tuple[None, None]:
    """
    :returns: the IP address (without an IPv6 zone) and port of a TCP
        C{address}, or C{(None, None)} for another kind.
    """
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if not isinstance(host, str) or not isinstance(port, int) or not port:
        return None, None
    host = host.partition("%")[0]
    try:
        ip_address(host)
    except ValueError:
        return None, None
    return host, port


class OwnAddress:
    """
    What L{Listening.match} returns: the listening address a destination
    names, in words for the 403 page and the log.
    """

    def __init__(self, rule: Rule) -> None:
        self.rule = rule

    def __str__(self) -> str:
        return f"{self.rule} (where this proxy listens: a forwarding loop)"


class Listening:
    """
    The TCP addresses the proxy listens on, as rules matching every
    spelling of them (L{netproxy.acl} reads IPv4-mapped and numeric forms).
    """

    def __init__(self) -> None:
        self._exact: set[tuple[str, int]] = set()
        self._every_address: set[int] = set()
        self._local: set[str] = set()
        self._rules = RuleSet()
        # Every rule names one of these ports: any other port is no loop,
        # known without matching the rules (a test made on every request).
        self._ports: frozenset[int] = frozenset()

    def add(self, port: IListeningPort) -> None:
        """
        A listening port has started: count its address.
        """
        host, number = _host_port(port.getHost())
        if host is None or number is None:
            # A unix socket: no URL names it.
            return
        if ip_address(host).is_unspecified:
            self._every_address.add(number)
        else:
            self._exact.add((host, number))
        self._rebuild()

    def accepted(self, local: IAddress) -> None:
        """
        A client connected to C{local}: on a port bound to every address,
        that is one of this host's addresses where the proxy answers.
        """
        host, number = _host_port(local)
        if (host is not None and number in self._every_address and host not in self._local
                and len(self._local) < MAX_LOCAL_ADDRESSES):
            self._local.add(host)
            self._rebuild()

    def _rebuild(self) -> None:
        rules = []
        ports = {number for _, number in self._exact} | self._every_address
        for number in sorted(ports):
            hosts = [host for host, bound in self._exact if bound == number]
            if number in self._every_address:
                hosts += [*_THIS_HOST, *sorted(self._local)]
            else:
                # Linux connects these to this host, whichever address the
                # port is bound to.
                hosts += ["0.0.0.0/8", "::"]
            rules += [parse_rule(f"[{host}]:{number}" if ":" in host else f"{host}:{number}") for host in hosts]
        self._rules = RuleSet(rules)
        self._ports = frozenset(ports)

    def match(self, host: str, port: int) -> OwnAddress | None:
        """
        :param host: a destination's address, or a name (which never
            matches: its address is matched once resolved).
        :returns: the L{OwnAddress} C{host:port} is, or L{None}.
        """
        if port not in self._ports:
            return None
        rule = self._rules.match(host, port)
        return None if rule is None else OwnAddress(rule)


class LoopGuard:
    """
    Destination rules that refuse the proxy's own listening addresses
    before the rules given: what the proxy hands the connection code, which
    matches a name's resolved address with it too.

    :param rules: the C{--block} rules, anything with C{match(host, port)}.
    :param listening: the proxy's L{Listening}.
    """

    def __init__(self, rules: Any, listening: Listening) -> None:
        self.rules = rules
        self.listening = listening

    def match(self, host: str, port: int) -> Any:
        """
        :returns: the L{OwnAddress} or the rule C{host:port} matches, or
            L{None}.
        """
        own = self.listening.match(host, port)
        return own if own is not None else self.rules.match(host, port)
