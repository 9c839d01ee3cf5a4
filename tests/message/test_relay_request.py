"""
Tests for L{netproxy.message.relay_request}: which decoded relay requests are
accepted, how their destination is normalised, and the reason given for each
one that is refused (it is sent to the peer as C{Error, bad request: ...}).
"""

import time

from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import BadRequest
from netproxy.message.relay_request import RelayRequest, parse_relay_request


def request(**fields):
    """
    :returns: a valid request message with C{fields} replaced; a field given
        as L{KeyError} is left out.
    """
    message = {"server_ip": "127.0.0.1", "server_port": 8888, "message": "tgmr"}
    message.update(fields)
    return {key: value for key, value in message.items() if value is not KeyError}


class ValidRequestTests(SynchronousTestCase):
    """
    Requests L{parse_relay_request} accepts, and what it makes of them.
    """

    def test_int_port(self):
        """
        A request with an integer port gives its host, port and the UTF-8 message.
        """
        self.assertEqual(
            parse_relay_request(request()),
            RelayRequest(host="127.0.0.1", port=8888, payload=b"tgmr"),
        )

    def test_digit_string_port(self):
        """
        A port sent as a string of digits is accepted as the number.
        """
        self.assertEqual(parse_relay_request(request(server_port="8888")).port, 8888)

    def test_digit_string_port_with_spaces(self):
        """
        Spaces around a digit-string port are ignored.
        """
        self.assertEqual(parse_relay_request(request(server_port=" 443 ")).port, 443)

    def test_port_bounds(self):
        """
        Ports 1 and 65535, the ends of the valid range, are accepted.
        """
        self.assertEqual(parse_relay_request(request(server_port=1)).port, 1)
        self.assertEqual(parse_relay_request(request(server_port="65535")).port, 65535)

    def test_ipv6(self):
        """
        An IPv6 address is accepted and written in its compressed form.
        """
        parsed = parse_relay_request(request(server_ip="0:0:0:0:0:0:0:1"))
        self.assertEqual(parsed.host, "::1")

    def test_bracketed_ipv6(self):
        """
        Brackets around an IPv6 address are removed.
        """
        self.assertEqual(parse_relay_request(request(server_ip="[::1]")).host, "::1")

    def test_host_name_lower_cased(self):
        """
        A host name is lower-cased and loses its trailing dot.
        """
        parsed = parse_relay_request(request(server_ip="WWW.Example.COM."))
        self.assertEqual(parsed.host, "www.example.com")

    def test_host_name_with_underscore_and_hyphen(self):
        """
        Host names may hold underscores and inner hyphens, as real ones do.
        """
        parsed = parse_relay_request(request(server_ip="_srv.my-host.example"))
        self.assertEqual(parsed.host, "_srv.my-host.example")

    def test_address_whitespace_stripped(self):
        """
        White space around the address is ignored.
        """
        self.assertEqual(parse_relay_request(request(server_ip=" 10.0.0.1\n")).host, "10.0.0.1")

    def test_unicode_message_is_utf8(self):
        """
        The payload is the UTF-8 encoding of the message text.
        """
        parsed = parse_relay_request(request(message="héllo ☃"))
        self.assertEqual(parsed.payload, "héllo ☃".encode("utf-8"))

    def test_empty_message(self):
        """
        An empty message is a valid request with an empty payload.
        """
        self.assertEqual(parse_relay_request(request(message="")).payload, b"")

    def test_extra_fields_ignored(self):
        """
        Fields other than the three the relay reads are ignored.
        """
        parsed = parse_relay_request(request(type=0, note="x"))
        self.assertEqual(parsed, RelayRequest("127.0.0.1", 8888, b"tgmr"))


class DestinationTests(SynchronousTestCase):
    """
    L{RelayRequest.destination} as written in logs and error replies.
    """

    def test_ipv4(self):
        """
        An IPv4 destination is C{host:port}.
        """
        self.assertEqual(RelayRequest("127.0.0.1", 8888, b"").destination, "127.0.0.1:8888")

    def test_ipv6(self):
        """
        An IPv6 destination has brackets around the address.
        """
        self.assertEqual(RelayRequest("::1", 443, b"").destination, "[::1]:443")

    def test_name(self):
        """
        A host-name destination is C{name:port}.
        """
        self.assertEqual(RelayRequest("example.com", 80, b"").destination, "example.com:80")

    def test_parsed_bracketed_ipv6(self):
        """
        A bracketed IPv6 request gets exactly one pair of brackets.
        """
        parsed = parse_relay_request(request(server_ip="[2001:db8::1]", server_port=7))
        self.assertEqual(parsed.destination, "[2001:db8::1]:7")


class BadRequestTests(SynchronousTestCase):
    """
    Requests L{parse_relay_request} refuses, and the reasons it gives.
    """

    def assertRefused(self, message, reason):
        """
        Assert that C{message} is refused with exactly C{reason}.
        """
        with self.assertRaises(BadRequest) as caught:
            parse_relay_request(message)
        self.assertEqual(str(caught.exception), reason)

    def test_missing_server_ip(self):
        """
        A request without C{server_ip} names the missing field.
        """
        self.assertRefused(request(server_ip=KeyError), "missing field 'server_ip'")

    def test_missing_server_port(self):
        """
        A request without C{server_port} names the missing field.
        """
        self.assertRefused(request(server_port=KeyError), "missing field 'server_port'")

    def test_missing_message(self):
        """
        A request without C{message} names the missing field.
        """
        self.assertRefused(request(message=KeyError), "missing field 'message'")

    def test_empty_object(self):
        """
        An empty object names the first field it lacks.
        """
        self.assertRefused({}, "missing field 'server_ip'")

    def test_port_zero(self):
        """
        Port 0 is not a destination port.
        """
        self.assertRefused(request(server_port=0), "server_port must be a port from 1 to 65535, got 0")

    def test_port_too_big(self):
        """
        Port 70000 is out of range.
        """
        self.assertRefused(request(server_port=70000), "server_port must be a port from 1 to 65535, got 70000")

    def test_port_65536(self):
        """
        Port 65536, one past the range, is refused.
        """
        self.assertRefused(request(server_port=65536), "server_port must be a port from 1 to 65535, got 65536")

    def test_port_negative(self):
        """
        A negative port is refused.
        """
        self.assertRefused(request(server_port=-1), "server_port must be a port from 1 to 65535, got -1")

    def test_port_negative_string(self):
        """
        A negative port written as a string is refused.
        """
        self.assertRefused(request(server_port="-1"), "server_port must be a port from 1 to 65535, got '-1'")

    def test_port_true(self):
        """
        C{true} is not port 1, though Python's bool is an int.
        """
        self.assertRefused(request(server_port=True), "server_port must be a port from 1 to 65535, got True")

    def test_port_false(self):
        """
        C{false} is not a port.
        """
        self.assertRefused(request(server_port=False), "server_port must be a port from 1 to 65535, got False")

    def test_port_float(self):
        """
        A fractional port is refused.
        """
        self.assertRefused(request(server_port=1.5), "server_port must be a port from 1 to 65535, got 1.5")

    def test_port_letters(self):
        """
        A string that is not digits is refused.
        """
        self.assertRefused(request(server_port="abc"), "server_port must be a port from 1 to 65535, got 'abc'")

    def test_port_null(self):
        """
        A null port is refused.
        """
        self.assertRefused(request(server_port=None), "server_port must be a port from 1 to 65535, got None")

    def test_port_empty_string(self):
        """
        An empty string is not a port.
        """
        self.assertRefused(request(server_port=""), "server_port must be a port from 1 to 65535, got ''")

    def test_port_list(self):
        """
        A list is not a port.
        """
        self.assertRefused(request(server_port=[80]), "server_port must be a port from 1 to 65535, got [80]")

    def test_port_non_ascii_digits(self):
        """
        Digits other than ASCII 0-9 are refused, not crashed on (int('²') fails).
        """
        self.assertRefused(request(server_port="²"), "server_port must be a port from 1 to 65535, got '²'")
        self.assertRefused(request(server_port="٨٠"), "server_port must be a port from 1 to 65535, got '٨٠'")

    def test_port_very_long_digit_string(self):
        """
        A digit string longer than int() converts is refused as out of range.
        """
        digits = "9" * 5000
        self.assertRefused(request(server_port=digits), f"server_port must be a port from 1 to 65535, got {digits!r}")

    def test_port_leading_zeros(self):
        """
        Leading zeros do not change the port or make it too long.
        """
        self.assertEqual(parse_relay_request(request(server_port="0" * 5000 + "80")).port, 80)
        self.assertRefused(request(server_port="000"), "server_port must be a port from 1 to 65535, got '000'")

    def test_server_ip_empty(self):
        """
        An empty address is refused.
        """
        self.assertRefused(request(server_ip=""), "server_ip must be an address, got ''")

    def test_server_ip_blank(self):
        """
        An address of only white space is refused.
        """
        self.assertRefused(request(server_ip="  "), "server_ip must be an address, got '  '")

    def test_server_ip_number(self):
        """
        A number is not an address, even one that could be read as IPv4.
        """
        self.assertRefused(request(server_ip=2130706433), "server_ip must be an address, got 2130706433")

    def test_server_ip_list(self):
        """
        A list is not an address.
        """
        self.assertRefused(request(server_ip=["127.0.0.1"]), "server_ip must be an address, got ['127.0.0.1']")

    def test_server_ip_null(self):
        """
        A null address is refused.
        """
        self.assertRefused(request(server_ip=None), "server_ip must be an address, got None")

    def test_server_ip_with_space(self):
        """
        Text with a space inside is neither an address nor a host name.
        """
        self.assertRefused(request(server_ip="exa mple"), "server_ip must be an address, got 'exa mple'")

    def test_server_ip_with_port(self):
        """
        C{host:port} in C{server_ip} is refused rather than half-read.
        """
        self.assertRefused(request(server_ip="example.com:80"), "server_ip must be an address, got 'example.com:80'")

    def test_server_ip_bad_labels(self):
        """
        Empty labels, labels at the edges with hyphens and overlong labels are refused.
        """
        for host in ("a..b", ".example", "-a.example", "a-.example", "a" * 64 + ".example", "a/b"):
            self.assertRefused(request(server_ip=host), f"server_ip must be an address, got {host!r}")

    def test_server_ip_too_long(self):
        """
        A host name longer than 253 characters is refused.
        """
        host = ".".join(["a" * 63] * 4)
        self.assertRefused(request(server_ip=host), f"server_ip must be an address, got {host!r}")

    def test_server_ip_longest_name(self):
        """
        A 253-character host name of 63-character labels is accepted.
        """
        host = ".".join(["a" * 63] * 3 + ["b" * 61])
        self.assertEqual(parse_relay_request(request(server_ip=host)).host, host)

    def test_server_ip_near_miss_is_fast(self):
        """
        Names that almost match are refused in linear time, not by exponential backtracking.
        """
        start = time.perf_counter()
        for host in ("a" * 60 + "!", "a" * 250 + "!", "a." * 120 + "-"):
            self.assertRefused(request(server_ip=host), f"server_ip must be an address, got {host!r}")
        self.assertLess(time.perf_counter() - start, 0.5)

    def test_server_ip_ipv6_malformed(self):
        """
        Malformed IPv6 literals are refused, brackets or not.
        """
        for host in ("[::1", "::1]", "[zz::1]", "[::1]x", "[[::1]]", "[]", "::1::", "1:2:3:4:5:6:7:8:9", "[::1]:80"):
            self.assertRefused(request(server_ip=host), f"server_ip must be an address, got {host!r}")

    def test_server_ip_zone(self):
        """
        An IPv6 zone (C{%eth0}), bracketed or not, is refused, saying so.
        """
        for host in ("fe80::1%eth0", "[fe80::1%eth0]", "fe80::1%25eth0", "::1%lo"):
            self.assertRefused(request(server_ip=host),
                               f"server_ip must be an address without a zone (%eth0), got {host!r}")

    def test_server_ip_brackets_only_ipv6(self):
        """
        Brackets hold an IPv6 address only, not a name or an IPv4 address.
        """
        for host in ("[example.com]", "[127.0.0.1]"):
            self.assertRefused(request(server_ip=host), f"server_ip must be an address, got {host!r}")

    def test_server_ip_ipv6_spellings(self):
        """
        Every spelling of an IPv6 address is read as that address: the rules then see it in every form.
        """
        for host, address in (("[0:0:0:0:0:0:0:1]", "::1"), ("[::]", "::"), ("::FFFF:127.0.0.1", "::ffff:127.0.0.1"),
                              ("[::ffff:7f00:1]", "::ffff:127.0.0.1"),
                              ("[2001:DB8::1]", "2001:db8::1")):
            self.assertEqual(parse_relay_request(request(server_ip=host)).host, address, host)

    def test_message_number(self):
        """
        A message that is a number is refused, naming its type.
        """
        self.assertRefused(request(message=42), "message must be a string, got int")

    def test_message_list(self):
        """
        A message that is a list is refused, naming its type.
        """
        self.assertRefused(request(message=["tgmr"]), "message must be a string, got list")

    def test_message_null(self):
        """
        A null message is refused, naming its type.
        """
        self.assertRefused(request(message=None), "message must be a string, got NoneType")

    def test_message_object(self):
        """
        A message that is an object is refused, naming its type.
        """
        self.assertRefused(request(message={"a": 1}), "message must be a string, got dict")

    def test_message_lone_surrogate(self):
        """
        A message holding a lone surrogate (valid JSON, no UTF-8 form) is refused, not crashed on.
        """
        self.assertRefused(request(message="ab\ud800"), "message is not valid Unicode text")

    def test_port_checked_after_address(self):
        """
        With several bad fields, the address is reported first.
        """
        self.assertRefused(request(server_ip="", server_port=0), "server_ip must be an address, got ''")
