"""
Tests for L{netproxy.proxy_header}: reading PROXY protocol headers.
"""

import socket
import struct

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from netproxy.proxy_header import V2_LONGEST, ProxyHeader, ProxyHeaderError, read_header

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(command=0x21, family=0x11, addresses=None, tlvs=b""):
    """
    :returns: a PROXY v2 header; by default, TCP over IPv4 from
        192.0.2.7:5555 to 198.51.100.1:3128.
    """
    if addresses is None:
        addresses = socket.inet_aton("192.0.2.7") + socket.inet_aton("198.51.100.1") + struct.pack("!HH", 5555, 3128)
    body = addresses + tlvs
    return SIGNATURE + bytes([command, family]) + struct.pack("!H", len(body)) + body


class ReadHeaderTests(SynchronousTestCase):
    """
    L{read_header} reads versions 1 and 2 of the PROXY protocol, and refuses anything else at its first wrong byte.
    """

    def test_v2_ipv4(self):
        """A v2 TCP/IPv4 header gives both addresses, and the bytes after it are left over."""
        header, rest = read_header(v2() + b"GET")
        self.assertEqual(header, ProxyHeader(IPv4Address("TCP", "192.0.2.7", 5555),
                                             IPv4Address("TCP", "198.51.100.1", 3128)))
        self.assertEqual(rest, b"GET")

    def test_v2_ipv6(self):
        """A v2 TCP/IPv6 header gives IPv6 addresses in their short form."""
        addresses = (socket.inet_pton(socket.AF_INET6, "2001:db8::7") + socket.inet_pton(socket.AF_INET6, "::1")
                     + struct.pack("!HH", 1, 2))
        header, rest = read_header(v2(family=0x21, addresses=addresses))
        self.assertEqual(header, ProxyHeader(IPv6Address("TCP", "2001:db8::7", 1), IPv6Address("TCP", "::1", 2)))
        self.assertEqual(rest, b"")

    def test_v2_unix(self):
        """A v2 unix stream header gives unix addresses."""
        addresses = b"/run/a".ljust(108, b"\0") + b"/run/b".ljust(108, b"\0")
        header, rest = read_header(v2(family=0x31, addresses=addresses))
        self.assertEqual(header, ProxyHeader(UNIXAddress(b"/run/a"), UNIXAddress(b"/run/b")))

    def test_v2_tlvs_skipped(self):
        """TLVs after the addresses (what proxy-v2-options adds) are part of the header, not of the data."""
        header, rest = read_header(v2(tlvs=b"\x04\x00\x02ab") + b"x")
        self.assertEqual(header.source, IPv4Address("TCP", "192.0.2.7", 5555))
        self.assertEqual(rest, b"x")

    def test_v2_local(self):
        """A LOCAL header (HAProxy's health checks) names no client, whatever its addresses."""
        self.assertEqual(read_header(v2(command=0x20, family=0, addresses=b"")), (ProxyHeader(None, None), b""))
        self.assertEqual(read_header(v2(command=0x20))[0], ProxyHeader(None, None))

    def test_v2_unspec(self):
        """A PROXY command with the UNSPEC family names no client either."""
        self.assertEqual(read_header(v2(family=0, addresses=b""))[0], ProxyHeader(None, None))

    def test_v2_incomplete(self):
        """Every prefix of a header is incomplete: more bytes are awaited."""
        header = v2()
        for end in range(len(header)):
            self.assertIsNone(read_header(header[:end]), end)

    def test_v2_refused(self):
        """Unknown commands or versions, datagram or unknown families, short addresses and huge headers are refused."""
        for bad in (v2(command=0x22), v2(command=0x11), v2(family=0x12), v2(family=0x41),
                    v2(addresses=b"\x7f\0\0\x01"), SIGNATURE + b"\x21\x11" + struct.pack("!H", V2_LONGEST)):
            self.assertRaises(ProxyHeaderError, read_header, bad)

    def test_v1(self):
        """A v1 line gives both addresses, for IPv4 and IPv6."""
        header, rest = read_header(b"PROXY TCP4 192.0.2.7 198.51.100.1 5555 3128\r\nGET")
        self.assertEqual(header, ProxyHeader(IPv4Address("TCP", "192.0.2.7", 5555),
                                             IPv4Address("TCP", "198.51.100.1", 3128)))
        self.assertEqual(rest, b"GET")
        header, rest = read_header(b"PROXY TCP6 2001:db8::7 ::1 1 2\r\n")
        self.assertEqual(header, ProxyHeader(IPv6Address("TCP", "2001:db8::7", 1), IPv6Address("TCP", "::1", 2)))

    def test_v1_unknown(self):
        """PROXY UNKNOWN names no client."""
        self.assertEqual(read_header(b"PROXY UNKNOWN\r\n"), (ProxyHeader(None, None), b""))

    def test_v1_incomplete(self):
        """A v1 line without its end is awaited, up to the protocol's 107 bytes."""
        self.assertIsNone(read_header(b"PROXY TCP4 192.0.2.7 "))
        self.assertIsNone(read_header(b"PROX"))
        self.assertRaises(ProxyHeaderError, read_header, b"PROXY " + b"1" * 101)

    def test_v1_refused(self):
        """Wrong protocols, addresses, ports or word counts are refused."""
        for line in (b"PROXY UDP4 192.0.2.7 198.51.100.1 1 2", b"PROXY TCP4 192.0.2.7 198.51.100.1 1",
                     b"PROXY TCP4 ::1 198.51.100.1 1 2", b"PROXY TCP6 192.0.2.7 ::1 1 2",
                     b"PROXY TCP4 192.0.2.7 198.51.100.1 +1 2", b"PROXY TCP4 192.0.2.7 198.51.100.1 01 2",
                     b"PROXY TCP4 192.0.2.7 198.51.100.1 1 65536", b"PROXY  TCP4 192.0.2.7 198.51.100.1 1 2",
                     b"PROXY TCP4 192.0.2.\xff 198.51.100.1 1 2"):
            self.assertRaises(ProxyHeaderError, read_header, line + b"\r\n")

    def test_no_header(self):
        """A request sent straight to the listener is refused from its first byte."""
        for data in (b"G", b"GET http://a/ HTTP/1.1\r\n", b"\r\n\r\nX", b"PROXYTCP4", b"\x16\x03\x01"):
            self.assertRaises(ProxyHeaderError, read_header, data)
