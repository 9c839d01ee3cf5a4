# -*- test-case-name: tests.test_this_host -*-
"""
This host as a destination.

Every role that checks destinations matches each address in all the forms
L{destination_aliases} gives, so that no spelling of this host escapes a
rule: 0.0.0.0/8 and C{::} are this host (Linux connects them to it), and a
rule matching loopback matches them.

The http role also refuses destinations on this host or on its link
(L{LocalDestinations}) unless C{--allow-local} is given, as Squid's default
C{http_access deny to_localhost} does: a proxy that reaches them hands its
clients the host's loopback-only services and the cloud metadata service at
169.254.169.254.  The fixed networks are 0.0.0.0/8 and C{::} (this host),
127.0.0.0/8 and C{::1} (loopback), 169.254.0.0/16 and fe80::/10
(link-local), each in its IPv4-mapped and -compatible forms too; to them
come the host's own interface addresses, read with C{getifaddrs(3)} at
start-up and on C{SIGHUP}.
"""

import ctypes
import ctypes.util
import os
import socket
import sys
from collections.abc import Callable, Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from netproxy.escaping import Logger

Address = IPv4Address | IPv6Address

# ::a.b.c.d, the deprecated IPv4-compatible form (RFC 4291 section 2.5.5.1).
_IPV4_COMPATIBLE = IPv6Network("::/96")

# 0.0.0.0/8 and :: name this host: Linux connects them to it.
_THIS_HOST = (IPv4Network("0.0.0.0/8"), IPv6Network("::/128"))

# This host's loopback in each family: what rules see it as, besides its own
# spelling.
_LOOPBACK = (IPv4Address("127.0.0.1"), IPv6Address("::1"))

_LOCAL_NETWORKS: tuple[tuple[IPv4Network | IPv6Network, str], ...] = (
    (IPv4Network("127.0.0.0/8"), "loopback"),
    (IPv6Network("::1/128"), "loopback"),
    (IPv4Network("169.254.0.0/16"), "link-local"),
    (IPv6Network("fe80::/10"), "link-local"),
)


def is_this_host(address: Address) -> bool:
    """
    :returns: whether C{address} names this host as a whole: 0.0.0.0/8 or
        C{::}, which Linux connects to the host itself.
    """
    return any(address in network for network in _THIS_HOST)


def destination_aliases(address: Address) -> tuple[Address, ...]:
    """
    Every address a destination's rules must see, so that no spelling of an
    address escapes a rule written for another.

    :param address: the address connected to, as
        L{netproxy.acl.host_address} reads it.
    :returns: C{address} without its zone; the IPv4 address an
        IPv4-mapped or -compatible one (C{::a.b.c.d}) carries; for this host
        (L{is_this_host}, in any of these forms) the loopback addresses
        127.0.0.1 and C{::1}, so that a rule matching loopback matches it;
        and for 127.0.0.1 or C{::1} the other one, the same host's loopback
        in the other family.
    """
    if address.version == 6 and address.scope_id is not None:
        address = IPv6Address(int(address))
    aliases: list[Address] = [address]
    if address.version == 6:
        if address.ipv4_mapped is not None:
            aliases.append(address.ipv4_mapped)
        elif address in _IPV4_COMPATIBLE and int(address) > 1:
            aliases.append(IPv4Address(int(address)))
    if any(is_this_host(alias) or alias in _LOOPBACK for alias in aliases):
        aliases.extend(loopback for loopback in _LOOPBACK if loopback not in aliases)
    return tuple(aliases)


class _IfAddrs(ctypes.Structure):
    """
    C{struct ifaddrs}, laid out alike on Linux, the BSDs and macOS.
    """


_IfAddrs._fields_ = [
    ("ifa_next", ctypes.POINTER(_IfAddrs)),
    ("ifa_name", ctypes.c_char_p),
    ("ifa_flags", ctypes.c_uint),
    ("ifa_addr", ctypes.c_void_p),
    ("ifa_netmask", ctypes.c_void_p),
    ("ifa_ifu", ctypes.c_void_p),
    ("ifa_data", ctypes.c_void_p),
]

# The BSDs and macOS start a struct sockaddr with its length (one byte) and
# then the family (one byte); Linux with a two-byte family.
_SA_LEN = sys.platform == "darwin" or "bsd" in sys.platform


def _sockaddr_address(pointer: int) -> Address | None:
    if _SA_LEN:
        family = ctypes.string_at(pointer, 2)[1]
    else:
        family = ctypes.c_uint16.from_address(pointer).value
    if family == socket.AF_INET:
        # struct sockaddr_in: family, port, then the address at offset 4.
        return IPv4Address(ctypes.string_at(pointer + 4, 4))
    if family == socket.AF_INET6:
        # struct sockaddr_in6: family, port, flow information, then the
        # address at offset 8.
        return IPv6Address(ctypes.string_at(pointer + 8, 16))
    return None


def interface_addresses() -> frozenset[Address]:
    """
    Read this host's interface addresses with C{getifaddrs(3)}, from the C
    library through L{ctypes}: on Linux a netlink request answered at once
    by the kernel, which never waits on the network.  It works on Linux, the
    BSDs and macOS; elsewhere (Windows has no C{getifaddrs}) it raises
    L{OSError}.

    :returns: every IPv4 and IPv6 address of every interface, without zones.
    :raises OSError: when the addresses cannot be read.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        getifaddrs = libc.getifaddrs
        freeifaddrs = libc.freeifaddrs
    except (OSError, AttributeError) as error:
        raise OSError(f"this system has no getifaddrs ({error})") from None
    getifaddrs.argtypes = [ctypes.POINTER(ctypes.POINTER(_IfAddrs))]
    freeifaddrs.argtypes = [ctypes.POINTER(_IfAddrs)]
    head = ctypes.POINTER(_IfAddrs)()
    if getifaddrs(ctypes.byref(head)) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"getifaddrs: {os.strerror(number)}")
    found = set()
    try:
        entry = head
        while entry:
            pointer = entry.contents.ifa_addr
            if pointer:
                address = _sockaddr_address(pointer)
                if address is not None:
                    found.add(address)
            entry = entry.contents.ifa_next
    finally:
        freeifaddrs(head)
    return frozenset(found)


class LocalDestinations:
    """
    Says whether a destination address is on this host or on its link.

    :param read_addresses: reads this host's interface addresses (by default
        L{interface_addresses}); called now and by L{reload}.
    :ivar own: this host's interface addresses, as last read.
    """

    log = Logger()

    def __init__(self, read_addresses: Callable[[], Iterable[Address]] = interface_addresses) -> None:
        self._read = read_addresses
        self.own: frozenset[Address] = frozenset()
        self.reload()

    def reload(self) -> bool:
        """
        Read this host's interface addresses again; when they cannot be
        read, keep those known (the fixed networks are refused anyway).

        :returns: whether they were read.
        """
        try:
            found = self._read()
            own = frozenset(alias for address in found for alias in destination_aliases(address))
        except OSError as error:
            self.log.warn("could not read this host's interface addresses ({reason}); refusing the {count} known "
                          "and the fixed local networks", reason=str(error), count=len(self.own))
            return False
        self.own = own
        self.log.info("refusing destinations on this host: {count} interface addresses and the loopback, "
                      "0.0.0.0/8 and link-local networks", count=len(own))
        return True

    def kind(self, address: Address) -> str | None:
        """
        :param address: the address about to be connected to.
        :returns: L{None} when it is elsewhere, else which kind of local
            address it is (a key of L{netproxy.errors.LocalDestination.KINDS}):
            C{"this host"}, C{"loopback"}, C{"own"} or C{"link-local"}.
        """
        aliases = destination_aliases(address)
        if any(is_this_host(alias) for alias in aliases):
            return "this host"
        for alias in aliases:
            for network, kind in _LOCAL_NETWORKS:
                if alias in network:
                    return kind
        if any(alias in self.own for alias in aliases):
            return "own"
        return None
