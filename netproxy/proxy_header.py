# -*- test-case-name: tests.test_proxy_header -*-
"""
The PROXY protocol's header (versions 1 and 2), as HAProxy's C{send-proxy}
and C{send-proxy-v2} write it first on a connection: who the client is and
which address it connected to.  A pure reader, fed what a peer has sent so
far; L{netproxy.proxy_protocol} runs it on the C{haproxy:} listeners.

The reader refuses bytes at the first one that cannot begin a header, so a
client that talks to such a listener directly (an HTTP request) is told
apart at once, and it bounds what it waits for: 107 bytes for version 1 (the
protocol's own limit), L{V2_LONGEST} for version 2.
"""

import struct
from dataclasses import dataclass
from ipaddress import IPv4Address as IPv4, IPv6Address as IPv6

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress

_V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
_V1_SIGNATURE = b"PROXY "
# Version 1's longest header, line end included (the protocol's own bound).
_V1_LONGEST = 107

#: Version 2's longest header here: the addresses and a few small TLVs (what
#: HAProxy adds with proxy-v2-options), far below the format's 64 KiB.
V2_LONGEST = 4096
# Version 2's command byte (version 2 in the high nibble) and the address
# blocks of the stream families it may carry: TCP over IPv4, over IPv6,
# a unix stream socket.
_LOCAL, _PROXY = 0x20, 0x21
_V2_ADDRESSES = {0x11: "!4s4sHH", 0x21: "!16s16sHH", 0x31: "!108s108s"}
_UNSPEC = 0x00


class ProxyHeaderError(ValueError):
    """
    The bytes a peer sent first are no PROXY protocol header.
    """


@dataclass(frozen=True)
class ProxyHeader:
    """
    What a PROXY header says about the connection HAProxy accepted.

    :ivar source: the client's address, or L{None} when the header names
        none (HAProxy's own health checks, C{LOCAL}, or an C{UNKNOWN}
        family): the connection is then HAProxy's own.
    :ivar destination: the address the client connected to (HAProxy's), or
        L{None}.
    """

    source: IAddress | None
    destination: IAddress | None


def read_header(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    """
    Read a PROXY protocol header (version 1 or 2) from the start of what a
    peer has sent so far.

    :param data: every byte received on the connection until now.
    :returns: the header and the bytes after it, or L{None} while the
        header is incomplete.
    :raises ProxyHeaderError: when the bytes cannot begin a header, or the
        header is malformed.
    """
    if data[:len(_V2_SIGNATURE)] == _V2_SIGNATURE[:len(data)]:
        return _read_v2(data)
    if data[:len(_V1_SIGNATURE)] == _V1_SIGNATURE[:len(data)]:
        return _read_v1(data)
    raise ProxyHeaderError("no PROXY protocol header")


def _read_v2(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    if len(data) < 16:
        return None
    command, family = data[12], data[13]
    end = 16 + struct.unpack("!H", data[14:16])[0]
    if command not in (_LOCAL, _PROXY):
        raise ProxyHeaderError(f"unknown PROXY v2 command 0x{command:02x}")
    if end > V2_LONGEST:
        raise ProxyHeaderError(f"PROXY v2 header of {end} bytes, more than {V2_LONGEST}")
    if len(data) < end:
        return None
    rest = data[end:]
    if command == _LOCAL or family == _UNSPEC:
        return ProxyHeader(None, None), rest
    layout = _V2_ADDRESSES.get(family)
    if layout is None:
        raise ProxyHeaderError(f"PROXY v2 family 0x{family:02x} is not a stream socket's")
    if end - 16 < struct.calcsize(layout):
        raise ProxyHeaderError("PROXY v2 addresses cut short")
    fields = struct.unpack_from(layout, data, 16)
    if family == 0x31:
        return ProxyHeader(UNIXAddress(fields[0].rstrip(b"\0")), UNIXAddress(fields[1].rstrip(b"\0"))), rest
    if family == 0x11:
        source: IAddress = IPv4Address("TCP", str(IPv4(fields[0])), fields[2])
        destination: IAddress = IPv4Address("TCP", str(IPv4(fields[1])), fields[3])
    else:
        source = IPv6Address("TCP", str(IPv6(fields[0])), fields[2])
        destination = IPv6Address("TCP", str(IPv6(fields[1])), fields[3])
    return ProxyHeader(source, destination), rest


def _read_v1(data: bytes) -> tuple[ProxyHeader, bytes] | None:
    line, found, rest = data.partition(b"\r\n")
    if not found:
        if len(data) >= _V1_LONGEST:
            raise ProxyHeaderError("PROXY v1 line too long")
        return None
    if len(line) + 2 > _V1_LONGEST:
        raise ProxyHeaderError("PROXY v1 line too long")
    words = line.split(b" ")
    if words[1:2] == [b"UNKNOWN"]:
        return ProxyHeader(None, None), rest
    if len(words) != 6 or words[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError("malformed PROXY v1 line")
    kind = IPv4Address if words[1] == b"TCP4" else IPv6Address
    parse = IPv4 if words[1] == b"TCP4" else IPv6
    try:
        hosts = [str(parse(word.decode("ascii"))) for word in words[2:4]]
        ports = [_port(word) for word in words[4:6]]
    except ValueError:
        raise ProxyHeaderError("malformed PROXY v1 line")
    return ProxyHeader(kind("TCP", hosts[0], ports[0]), kind("TCP", hosts[1], ports[1])), rest


def _port(word: bytes) -> int:
    # Digits only (int() would take "+1" or " 1"), no leading zero.
    if not word.isdigit() or (word.startswith(b"0") and word != b"0") or int(word) > 65535:
        raise ValueError(word)
    return int(word)
