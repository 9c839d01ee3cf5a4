# -*- test-case-name: tests.test_acl -*-
"""
Access rules: which destinations (or clients) a rule list names.

The relay and the HTTP proxy share one rule syntax for their destination
blocklists (``--block RULE``, ``--blocklist FILE``), and the HTTP proxy uses
the same rules for its client allow-list.  This module holds the parser and
the immutable :class:`Rule` and :class:`RuleSet`; :mod:`netproxy.rules_file`
reads them from files and reloads them.

It does no I/O and no DNS: callers match the name they were given, resolve
it themselves, and match again with the address.

Clients are matched by their IP address, and every client on a Unix socket
by the name ``unix`` (see :func:`netproxy.connections.client_host`): the
rule ``unix`` (or ``unix:``, as nginx writes it) admits them.
"""

import re
import socket
from dataclasses import dataclass, field
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import Iterable, Iterator

from netproxy.errors import RuleError

# Letters, digits, '-' (not at either end) and '_', which real host names
# (SRV-style and many internal names) use even though RFC 952 forbids it.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")

# Hosts that are not ipaddress literals but that getaddrinfo() still reads as
# IPv4 addresses (127.1, 2130706433, 0x7f.0.0.1, 0177.0.0.1); treating them as
# names would let them slip past every address rule.
_NUMERIC_HOST = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")

_IPV4_MAPPED = IPv6Network("::ffff:0:0/96")


@dataclass(frozen=True, repr=False)
class Rule:
    """
    One access rule, made by :func:`parse_rule`; ``str(rule)`` is its
    canonical text, which parses back to an equal rule.

    :ivar network: The addresses matched (a single address is a network of
        one; IPv4-mapped IPv6 rules are stored as IPv4), or ``None``.
    :ivar name: The host name: lower case, IDNA A-label, no trailing dot; or
        ``None``.  With neither network nor name, the rule matches every host.
    :ivar subdomains: The rule is ``*.name``: names below ``name`` at any
        depth, but not ``name`` itself (as in nginx).
    :ivar port: The only port matched, or ``None`` for every port.
    """

    network: IPv4Network | IPv6Network | None = None
    name: str | None = None
    subdomains: bool = False
    port: int | None = None
    _suffix: str | None = field(init=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.name is not None and self.network is not None or self.subdomains and not self.name:
            raise ValueError("a rule has a network or a name (or neither); subdomains need a name")
        if self.port is not None and not 1 <= self.port <= 65535:
            raise ValueError(f"port {self.port} is not in 1-65535")
        if self.subdomains and self.name is not None:
            object.__setattr__(self, "_suffix", "." + self.name)

    def _match(self, address: IPv4Address | IPv6Address | None, name: str | None, port: int | None) -> bool:
        if self.port is not None and port != self.port:
            return False
        if self.network is not None:
            return address is not None and address in self.network
        if self.name is None:
            return True
        if name is None:
            return False
        if self._suffix is not None:
            return len(name) > len(self._suffix) and name.endswith(self._suffix)
        return name == self.name

    def __str__(self) -> str:
        net = self.network
        if net is None:
            host = "*" if self.name is None else ("*." if self.subdomains else "") + self.name
        else:
            whole = net.prefixlen == net.max_prefixlen
            host = str(net.network_address) if whole else str(net)
            if self.port is not None and net.version == 6:
                # Brackets keep the port apart from the address's own colons.
                host = f"[{net.network_address}]" + ("" if whole else f"/{net.prefixlen}")
        return host if self.port is None else f"{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<Rule {str(self)!r}>"


@lru_cache(maxsize=4096)
def _parse_host(host: str) -> tuple[IPv4Address | IPv6Address, None] | tuple[None, str]:
    """
    Turn a destination into ``(address, None)`` or ``(None, name)``.

    Remembered for the hosts seen most recently: a proxy meets the same
    few destinations again and again, and parsing an address is slow.
    """
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        address = ip_address(text)
    except ValueError:
        name = host.rstrip(".").lower()
        if _NUMERIC_HOST.fullmatch(name):
            try:
                return IPv4Address(socket.inet_aton(name)), None
            except OSError:
                pass
        if not name.isascii():
            try:
                name = name.encode("idna").decode("ascii")
            except UnicodeError:
                pass
        return None, name
    if address.version == 6 and address.ipv4_mapped is not None:
        return address.ipv4_mapped, None
    return address, None


def host_address(host: str) -> IPv4Address | IPv6Address | None:
    """
    Read a destination host as an address without looking it up, as the
    resolver would: an IP literal (in brackets or not, with or without a
    zone), an IPv4-mapped IPv6 address (as IPv4), or one of the numeric IPv4
    forms C{inet_aton} reads (C{127.1}, C{2130706433}, C{0x7f.0.0.1},
    C{0177.0.0.1}, with or without a trailing dot).

    :param host: the host as a client named it.
    :returns: the address, or L{None} for a host name.
    """
    return _parse_host(host)[0]


def _unmap(network: IPv4Network | IPv6Network) -> IPv4Network | IPv6Network:
    # Mapped hosts are matched as IPv4, so mapped rules must be IPv4 too.
    if network.version == 6 and network.subnet_of(_IPV4_MAPPED):
        mapped = network.network_address.ipv4_mapped
        return IPv4Network((mapped, network.prefixlen - 96))
    return network


def _parse_port(text: str) -> int:
    if not text:
        raise ValueError("the port is missing after ':'")
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise ValueError(f"the port must be a number from 1 to 65535, not {text!r}")
    return int(text)


def _parse_name(text: str) -> tuple[str, bool]:
    subdomains = text.startswith("*.")
    name = text[2:] if subdomains else text
    name = name[:-1] if name.endswith(".") else name
    if not name:
        raise ValueError("the host name is missing")
    if "*" in name:
        raise ValueError("'*' is allowed only alone or as a first label, like *.example.com")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError as e:
            raise ValueError(f"not a valid international domain name ({e})") from None
    name = name.lower()
    if len(name) > 253:
        raise ValueError("the host name is longer than 253 characters")
    labels = name.split(".")
    for label in labels:
        if not label:
            raise ValueError("the host name has an empty label")
        if not _LABEL.fullmatch(label):
            raise ValueError(f"the label {label!r} is not 1-63 letters, digits, '_' and inner '-'")
    if labels[-1].isdigit():
        raise ValueError("not a valid IPv4 address or network, nor a host name")
    return name, subdomains


def _parse(text: str) -> Rule:
    if not text:
        raise ValueError("the rule is empty")
    if any(c.isspace() for c in text):
        raise ValueError("a rule cannot contain white space")
    if "%" in text:
        raise ValueError("IPv6 zone indexes (like %eth0) are not supported")
    # A bare IPv6 address would be ambiguous with a port, so whatever parses
    # as a whole address or network is one; a port needs brackets.
    try:
        return Rule(network=_unmap(ip_network(text, strict=False)))
    except ValueError:
        pass
    if text.startswith("["):
        inside, close, rest = text[1:].partition("]")
        if not close:
            raise ValueError("']' is missing after the IPv6 address")
        prefix, colon, port_text = rest.partition(":")
        if prefix and not prefix.startswith("/"):
            raise ValueError(f"{rest!r} after ']' is neither /PREFIX nor :PORT")
        port = _parse_port(port_text) if colon else None
        try:
            IPv6Address(inside)
            network = IPv6Network(inside + prefix, strict=False)
        except ValueError as e:
            raise ValueError(f"not a valid IPv6 address or network in brackets ({e})") from None
        return Rule(network=_unmap(network), port=port)
    if text == "unix:":
        # nginx's "allow unix:"; the same rule as "unix".
        return Rule(name="unix")
    if text.count(":") > 1:
        raise ValueError("not an IPv6 address or network; with a port, use brackets: [::1]:443")
    host, colon, port_text = text.rpartition(":")
    if colon:
        port = _parse_port(port_text)
    else:
        host, port = text, None
    if host in ("", "*"):
        return Rule(port=port)
    if "/" in host:
        try:
            return Rule(network=IPv4Network(host, strict=False), port=port)
        except ValueError as e:
            raise ValueError(f"not a valid IPv4 network ({e})") from None
    try:
        return Rule(network=IPv4Network(IPv4Address(host)), port=port)
    except ValueError:
        pass
    name, subdomains = _parse_name(host)
    return Rule(name=name, subdomains=subdomains, port=port)


def parse_rule(text: str) -> Rule:
    """
    Parse one rule.

    The forms are: an address (``10.0.0.1``, ``::1``, ``[::1]``); a network
    (``10.0.0.0/8``, ``2001:db8::/32``, ``[2001:db8::]/32``); a port on any host
    (``*:7777`` or ``:7777``); any of these or a name followed by a port
    (``127.0.0.1:7777``, ``[::1]:443``, ``10.0.0.0/8:22``, ``example.com:80``);
    a host name (``example.com``); every subdomain of a name at any depth, but
    not the name itself (``*.example.com``); every host (``*``).  Among
    client rules, the name ``unix`` (also written ``unix:``) means the
    clients of Unix sockets.  Text that
    parses whole as an IPv6 address is one (``2001:db8::1:80`` has no port).

    :param text: The rule; surrounding white space is ignored.
    :returns: The :class:`Rule`.
    :raises RuleError: If the text is not a rule; the message quotes it and
        says why.
    """
    text = text.strip()
    try:
        return _parse(text)
    except ValueError as e:
        raise RuleError(f"bad rule {text!r}: {e}") from None


class RuleSet:
    """
    An immutable, ordered collection of rules; empty sets are false and sets
    add with ``+``.  Names are looked up in dictionaries, so long name
    blocklists stay fast.
    """

    __slots__ = ("_rules", "_by_name", "_by_parent", "_for_addresses", "_any_host")

    def __init__(self, rules: Iterable[Rule] = ()) -> None:
        self._rules = tuple(rules)
        self._by_name: dict[str, list[tuple[int, Rule]]] = {}
        self._by_parent: dict[str, list[tuple[int, Rule]]] = {}
        self._for_addresses: list[Rule] = []
        self._any_host: list[tuple[int, Rule]] = []
        for index, rule in enumerate(self._rules):
            if not isinstance(rule, Rule):
                raise TypeError(f"expected a Rule, got {rule!r}")
            if rule.name is None:
                self._for_addresses.append(rule)
                if rule.network is None:
                    self._any_host.append((index, rule))
            else:
                table = self._by_parent if rule.subdomains else self._by_name
                table.setdefault(rule.name, []).append((index, rule))

    @classmethod
    def from_lines(cls, lines: Iterable[str], source: str = "<rules>") -> "RuleSet":
        """
        Parse rules written one per line; blank lines are ignored and ``#``
        starts a comment, on its own line or after a rule.

        :param lines: The lines, with or without their line endings.
        :param source: Where the lines come from, for error messages.
        :returns: The rules, in order.
        :raises RuleError: At the first bad line, naming ``source`` and the
            line number: ``rules.txt line 3: bad rule 'x': ...``.
        """
        rules = []
        for number, line in enumerate(lines, 1):
            text = line.partition("#")[0].strip()
            if text:
                try:
                    rules.append(parse_rule(text))
                except RuleError as e:
                    raise RuleError(f"{source} line {number}: {e}") from None
        return cls(rules)

    def match(self, host: str, port: int | None = None) -> Rule | None:
        """
        Find the first rule matching a destination.

        :param host: An IPv4 or IPv6 address (possibly in brackets, possibly
            IPv4-mapped) or a host name (any case, trailing dot allowed).
            Address rules match only addresses, name rules only names.
        :param port: The port, or ``None`` when there is none; then only rules
            without a port match.
        :returns: The first matching :class:`Rule`, or ``None``.
        """
        address, name = _parse_host(host)
        if name is None:
            for rule in self._for_addresses:
                if rule._match(address, None, port):
                    return rule
            return None
        best: tuple[int, Rule] | None = None
        candidates = [self._by_name.get(name, ()), self._any_host]
        if self._by_parent:
            # From 1: "*.example.com" needs a label before ".example.com".
            dot = name.find(".", 1)
            while dot >= 0:
                candidates.append(self._by_parent.get(name[dot + 1 :], ()))
                dot = name.find(".", dot + 1)
        for entries in candidates:
            for index, rule in entries:
                if best is not None and index > best[0]:
                    break
                if rule.port is None or rule.port == port:
                    best = (index, rule)
                    break
        return None if best is None else best[1]

    def __len__(self) -> int:
        return len(self._rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self._rules)

    def __bool__(self) -> bool:
        return bool(self._rules)

    def __add__(self, other: "RuleSet") -> "RuleSet":
        if not isinstance(other, RuleSet):
            return NotImplemented
        return RuleSet(self._rules + other._rules)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RuleSet):
            return NotImplemented
        return self._rules == other._rules

    def __hash__(self) -> int:
        return hash(self._rules)

    def __repr__(self) -> str:
        return f"RuleSet({[str(rule) for rule in self._rules]!r})"
