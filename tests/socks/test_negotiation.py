"""
Tests for L{netproxy.socks.negotiation}: the SOCKS5 greeting, login and
request read from bytes as they arrive, and the replies.
"""

import struct

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.socks import negotiation
from netproxy.socks.negotiation import NegotiationError, Request, read_greeting, read_login, read_request, reply


def request_bytes(address_type, address, port=80, command=negotiation.CONNECT, version=5, reserved=0):
    """
    :returns: a request's bytes, the address given as its wire form.
    """
    return bytes((version, command, reserved, address_type)) + address + struct.pack("!H", port)


class GreetingTests(SynchronousTestCase):
    """
    The greeting: version 5 and the methods offered.
    """

    def test_complete(self):
        """A greeting gives its methods and its size; bytes after it are not taken."""
        self.assertEqual(read_greeting(b"\x05\x02\x00\x02rest"), (frozenset({0, 2}), 4))

    def test_incomplete(self):
        """Each prefix of a greeting needs more bytes."""
        for end in range(4):
            self.assertIsNone(read_greeting(b"\x05\x02\x00\x02"[:end]))

    def test_wrong_version(self):
        """A SOCKS4 (or any other) first byte is refused at once, however short."""
        for data in (b"\x04", b"\x04\x01\x00\x50", b"GET / HTTP/1.1\r\n"):
            error = self.assertRaises(NegotiationError, read_greeting, data)
            self.assertIn("not 5", str(error))
            self.assertIsNone(error.reply)

    def test_no_methods(self):
        """A greeting offering no method is an empty set: none is acceptable."""
        self.assertEqual(read_greeting(b"\x05\x00"), (frozenset(), 2))

    def test_most_methods(self):
        """255 methods are read whole: 257 bytes."""
        data = b"\x05\xff" + bytes(range(255))
        self.assertIsNone(read_greeting(data[:-1]))
        methods, size = read_greeting(data)
        self.assertEqual((len(methods), size), (255, 257))


class LoginTests(SynchronousTestCase):
    """
    The RFC 1929 login.
    """

    def test_complete(self):
        """A login gives user, password and its size."""
        self.assertEqual(read_login(b"\x01\x05alice\x06secretX"), (b"alice", b"secret", 14))

    def test_incomplete(self):
        """Each prefix of a login needs more bytes."""
        data = b"\x01\x05alice\x06secret"
        for end in range(len(data)):
            self.assertIsNone(read_login(data[:end]))

    def test_empty_password(self):
        """An empty password is read (and will be refused by the check)."""
        self.assertEqual(read_login(b"\x01\x01a\x00"), (b"a", b"", 4))

    def test_empty_user(self):
        """An empty user name is refused."""
        self.assertRaises(NegotiationError, read_login, b"\x01\x00\x01x")

    def test_wrong_version(self):
        """A login of another sub-negotiation version is refused."""
        error = self.assertRaises(NegotiationError, read_login, b"\x05\x01\x00")
        self.assertIn("not 1", str(error))


class RequestTests(SynchronousTestCase):
    """
    The request: command, address and port.
    """

    def test_ipv4(self):
        """An IPv4 request gives the address in dotted form."""
        data = request_bytes(negotiation.IPV4, bytes((10, 0, 0, 1)), 443)
        self.assertEqual(read_request(data + b"tail"), (Request(1, "10.0.0.1", 443, negotiation.IPV4), len(data)))

    def test_ipv6(self):
        """An IPv6 request gives the address in its short form, named in brackets with its port."""
        data = request_bytes(negotiation.IPV6, b"\x00" * 15 + b"\x01", 8080)
        request, size = read_request(data)
        self.assertEqual((request.host, request.port, size), ("::1", 8080, 22))
        self.assertEqual(request.destination, "[::1]:8080")

    def test_name(self):
        """A name is read in lower case."""
        data = request_bytes(negotiation.DOMAIN_NAME, b"\x0bExample.COM", 80)
        request, size = read_request(data)
        self.assertEqual((request.host, request.destination, size), ("example.com", "example.com:80", len(data)))

    def test_incomplete(self):
        """Each prefix of a request needs more bytes."""
        for data in (request_bytes(negotiation.IPV4, b"\x01\x02\x03\x04"),
                     request_bytes(negotiation.DOMAIN_NAME, b"\x03a.b"),
                     request_bytes(negotiation.IPV6, bytes(16))):
            for end in range(len(data)):
                self.assertIsNone(read_request(data[:end]), data[:end])

    def test_unknown_command(self):
        """A command the server does not serve is read; the caller refuses it."""
        request, _ = read_request(request_bytes(negotiation.IPV4, bytes(4), command=9))
        self.assertEqual(request.command, 9)

    def test_unknown_address_type(self):
        """An unknown address type is refused with reply 8."""
        error = self.assertRaises(NegotiationError, read_request, b"\x05\x01\x00\x02abcdef")
        self.assertEqual(error.reply, negotiation.ADDRESS_TYPE_NOT_SUPPORTED)

    def test_reserved(self):
        """A reserved byte that is not zero is refused with reply 1."""
        error = self.assertRaises(NegotiationError, read_request,
                                  request_bytes(negotiation.IPV4, bytes(4), reserved=1))
        self.assertEqual(error.reply, negotiation.GENERAL_FAILURE)

    def test_wrong_version(self):
        """A request of another version is refused without a reply."""
        error = self.assertRaises(NegotiationError, read_request, request_bytes(1, bytes(4), version=4))
        self.assertIsNone(error.reply)

    def test_bad_names(self):
        """Names with control bytes, spaces, no label or empty labels are refused with reply 1."""
        for name in (b"a\nb", b"a b", b".", b"..", b"a..b", b"\x1b[31m", "é.fr".encode()):
            data = request_bytes(negotiation.DOMAIN_NAME, bytes((len(name),)) + name)
            error = self.assertRaises(NegotiationError, read_request, data)
            self.assertEqual(error.reply, negotiation.GENERAL_FAILURE, name)

    def test_empty_name(self):
        """An empty name is refused with reply 1."""
        error = self.assertRaises(NegotiationError, read_request, request_bytes(negotiation.DOMAIN_NAME, b"\x00"))
        self.assertEqual(error.reply, negotiation.GENERAL_FAILURE)

    def test_port_zero(self):
        """Port 0 is refused with reply 1."""
        error = self.assertRaises(NegotiationError, read_request, request_bytes(negotiation.IPV4, bytes(4), port=0))
        self.assertEqual(error.reply, negotiation.GENERAL_FAILURE)

    @given(st.binary(max_size=300))
    def test_any_bytes(self, data):
        """Any bytes are read, found incomplete or refused with NegotiationError: nothing else."""
        try:
            found = read_request(data)
        except NegotiationError:
            return
        if found is not None:
            self.assertLessEqual(found[1], len(data))
            self.assertLessEqual(found[1], 262)


class ReplyTests(SynchronousTestCase):
    """
    The server's replies.
    """

    def test_success_ipv4(self):
        """A reply carries the bound IPv4 address and port."""
        self.assertEqual(reply(0, "127.0.0.1", 40000), b"\x05\x00\x00\x01\x7f\x00\x00\x01\x9c\x40")

    def test_success_ipv6(self):
        """An IPv6 bound address is sent as address type 4; a zone is dropped."""
        self.assertEqual(reply(0, "fe80::1%eth0", 1), b"\x05\x00\x00\x04" + bytes.fromhex("fe80" + "00" * 13 + "01")
                         + b"\x00\x01")

    def test_mapped(self):
        """An IPv4-mapped bound address is sent as IPv4."""
        self.assertEqual(reply(0, "::ffff:10.0.0.1", 80)[3:8], b"\x01\x0a\x00\x00\x01")

    def test_failure(self):
        """A failure reply carries the code and 0.0.0.0:0."""
        self.assertEqual(reply(negotiation.NOT_ALLOWED), b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")

    def test_method_and_login(self):
        """The method choice and the login answers are two bytes."""
        self.assertEqual(negotiation.method_reply(0xFF), b"\x05\xff")
        self.assertEqual(negotiation.login_reply(True), b"\x01\x00")
        self.assertEqual(negotiation.login_reply(False), b"\x01\x01")
