"""
Tests for L{netproxy.http.message}: request targets, connection persistence,
the header rewriting for the next hop, loop detection, and the serialised
heads and error pages.
"""

import re
from http import HTTPStatus

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import HTTPError
from netproxy.http.message import (
    HOP_BY_HOP,
    PSEUDONYM,
    Target,
    error_response,
    forward_headers,
    is_loop,
    keep_alive,
    parse_target,
    request_head_bytes,
    response_head_bytes,
)


class ParseTargetTests(SynchronousTestCase):
    """
    Absolute-form and authority-form targets, and every rejection.
    """

    def assertRejected(self, method, target, fragment=None):
        error = self.assertRaises(HTTPError, parse_target, method, target)
        self.assertEqual(error.status, 400)
        if fragment is not None:
            self.assertIn(fragment, str(error))
        return error

    def test_default_port(self):
        """An absolute URL without a port goes to port 80, shown without it."""
        self.assertEqual(
            parse_target(b"GET", b"http://example.com/a/b"),
            Target(b"http", b"example.com", 80, b"/a/b", b"example.com"),
        )

    def test_explicit_port(self):
        """An explicit port is kept, and shown in the authority unless it is 80."""
        self.assertEqual(
            parse_target(b"GET", b"http://example.com:8080/"),
            Target(b"http", b"example.com", 8080, b"/", b"example.com:8080"),
        )
        self.assertEqual(parse_target(b"GET", b"http://example.com:80/").authority, b"example.com")

    def test_empty_port(self):
        """C{host:} means the default port, as RFC 3986 allows."""
        self.assertEqual(parse_target(b"GET", b"http://example.com:/x").port, 80)

    def test_case_insensitive_scheme_and_host(self):
        """The scheme is matched and the host lower-cased whatever their case; the path keeps its case."""
        self.assertEqual(
            parse_target(b"GET", b"HTTP://Example.COM/Path"),
            Target(b"http", b"example.com", 80, b"/Path", b"example.com"),
        )

    def test_ipv6(self):
        """An IPv6 literal loses its brackets in the host and keeps them in the authority."""
        self.assertEqual(
            parse_target(b"GET", b"http://[::1]:8080/x"),
            Target(b"http", b"::1", 8080, b"/x", b"[::1]:8080"),
        )
        self.assertEqual(parse_target(b"GET", b"http://[FE80::1]/").authority, b"[fe80::1]")

    def test_ipv4(self):
        """An IPv4 address is a host like any other."""
        self.assertEqual(parse_target(b"GET", b"http://127.0.0.1:81/").host, b"127.0.0.1")

    def test_query_kept(self):
        """The query is part of the path sent upstream."""
        self.assertEqual(parse_target(b"GET", b"http://h/p?a=1&b=2").path, b"/p?a=1&b=2")

    def test_query_without_path(self):
        """A query straight after the authority gets a C{/} path in front."""
        self.assertEqual(parse_target(b"GET", b"http://h:81?a=1").path, b"/?a=1")

    def test_empty_path(self):
        """An empty path is sent as C{/}."""
        self.assertEqual(parse_target(b"GET", b"http://example.com").path, b"/")

    def test_options_empty_path(self):
        """OPTIONS to a bare authority is forwarded in asterisk-form (RFC 9112 section 3.2.4)."""
        self.assertEqual(parse_target(b"OPTIONS", b"http://example.com").path, b"*")
        self.assertEqual(parse_target(b"OPTIONS", b"http://example.com/").path, b"/")
        self.assertEqual(parse_target(b"OPTIONS", b"http://example.com?q").path, b"/?q")

    def test_percent_encoded_path(self):
        """Percent-encoding in the path is passed on untouched."""
        self.assertEqual(parse_target(b"GET", b"http://h/a%2Fb%20c?x=%41").path, b"/a%2Fb%20c?x=%41")

    def test_connect(self):
        """CONNECT takes C{host:port} and keeps the port in the authority."""
        self.assertEqual(
            parse_target(b"CONNECT", b"Example.com:443"),
            Target(b"", b"example.com", 443, b"", b"example.com:443"),
        )
        self.assertEqual(parse_target(b"CONNECT", b"example.com:80").authority, b"example.com:80")

    def test_connect_ipv6(self):
        """CONNECT to an IPv6 literal keeps the brackets in the authority only."""
        self.assertEqual(
            parse_target(b"CONNECT", b"[::1]:443"),
            Target(b"", b"::1", 443, b"", b"[::1]:443"),
        )

    def test_connect_requires_port(self):
        """CONNECT without a port is refused."""
        self.assertRejected(b"CONNECT", b"example.com", "port")
        self.assertRejected(b"CONNECT", b"example.com:", "port")
        self.assertRejected(b"CONNECT", b"[::1]", "port")

    def test_connect_other_forms(self):
        """CONNECT with anything but authority-form is refused."""
        for target in [b"http://example.com:443/", b"/", b"*", b"example.com:443/", b"user@h:443", b""]:
            self.assertRejected(b"CONNECT", target)

    def test_https(self):
        """An https URL is refused with a pointer to CONNECT."""
        error = self.assertRejected(b"GET", b"https://example.com/")
        self.assertEqual(str(error), "https URLs go through CONNECT")
        self.assertRejected(b"GET", b"HTTPS://example.com/", "CONNECT")

    def test_other_schemes(self):
        """Schemes other than http are refused, naming the scheme."""
        self.assertRejected(b"GET", b"ftp://example.com/", "ftp")
        self.assertRejected(b"GET", b"mailto:a@b", "mailto")

    def test_malformed(self):
        """Targets that are no URL at all are refused."""
        for target in [b"", b"http:/x", b"http:x", b"example.com:80", b"1://x", b"://x"]:
            self.assertRejected(b"GET", target)

    def test_userinfo(self):
        """User information in the URL is refused."""
        self.assertRejected(b"GET", b"http://user:pw@example.com/", "user")
        self.assertRejected(b"GET", b"http://@example.com/")

    def test_at_in_path(self):
        """An C{@} in the path is not user information."""
        self.assertEqual(parse_target(b"GET", b"http://h/a@b").path, b"/a@b")

    def test_fragment(self):
        """A fragment is refused, in the path or straight after the host."""
        self.assertRejected(b"GET", b"http://h/p#frag", "fragment")
        self.assertRejected(b"GET", b"http://h#frag", "fragment")

    def test_bad_ports(self):
        """Ports outside 1-65535, or not made of digits, are refused."""
        for port in [b"0", b"65536", b"99999", b"123456", b"-1", b"+80", b"8a", b"1" * 5000]:
            self.assertRejected(b"GET", b"http://h:" + port + b"/", "port")
            self.assertRejected(b"CONNECT", b"h:" + port)

    def test_port_limits(self):
        """Ports 1 and 65535 are accepted."""
        self.assertEqual(parse_target(b"GET", b"http://h:1/").port, 1)
        self.assertEqual(parse_target(b"CONNECT", b"h:65535").port, 65535)

    def test_empty_host(self):
        """A URL without a host is refused."""
        for target in [b"http:///x", b"http://", b"http://:80/", b"http://?q"]:
            self.assertRejected(b"GET", target, "empty host")

    def test_percent_in_host(self):
        """Percent-encoding in the host, IPv6 zone identifiers included, is refused."""
        self.assertRejected(b"GET", b"http://ex%61mple.com/", "percent")
        self.assertRejected(b"GET", b"http://[fe80::1%25eth0]/", "percent")
        self.assertRejected(b"CONNECT", b"ex%61mple.com:443", "percent")

    def test_bad_host_characters(self):
        """Hosts with characters outside RFC 3986 reg-name are refused."""
        for host in [b"a\\b", b"a<b", b'a"b', b"a^b", b"a{b", b"a|b", b"a`b", b"a[b"]:
            self.assertRejected(b"GET", b"http://" + host + b"/")

    def test_sub_delims_allowed(self):
        """RFC 3986 sub-delims are valid in a reg-name."""
        self.assertEqual(parse_target(b"GET", b"http://a-b_c~d!$&'()*+,;=.e/").host, b"a-b_c~d!$&'()*+,;=.e")

    def test_bad_ipv6(self):
        """Malformed or unbracketed IPv6 literals are refused."""
        for authority in [b"[::1", b"[::g]", b"[]", b"[v1.x]", b"[::1]x", b"[127.0.0.1]", b"::1"]:
            self.assertRejected(b"GET", b"http://" + authority + b"/")
        self.assertRejected(b"CONNECT", b"::1:443")

    def test_invalid_characters(self):
        """Control characters, spaces and non-ASCII bytes anywhere in the target are refused."""
        for target in [
            b"http://h/a b",
            b"http://h/\r\nX: y",
            b"http://h/\x00",
            b"http://h/\xc3\xa9",
            b"http://h\t/",
        ]:
            self.assertRejected(b"GET", target, "invalid character")

    def test_origin_form(self):
        """Origin-form and asterisk-form are not proxy requests."""
        self.assertRejected(b"GET", b"/index.html", "not a proxy request")
        self.assertRejected(b"OPTIONS", b"*", "not a proxy request")

    def test_long_target_quoted_briefly(self):
        """An error quotes a long target only in part."""
        error = self.assertRejected(b"GET", b"/" + b"a" * 10000)
        self.assertLess(len(str(error)), 200)


class IPv6TargetTests(SynchronousTestCase):
    """
    IPv6 literals in absolute-form and CONNECT targets, hostile spellings and malformed ones.
    """

    def test_spellings_kept_apart_from_names(self):
        """Full, mapped and unspecified spellings are read as addresses, lower-cased, and bracketed in the authority."""
        for literal, host in ((b"[0:0:0:0:0:0:0:1]", b"0:0:0:0:0:0:0:1"), (b"[::FFFF:127.0.0.1]", b"::ffff:127.0.0.1"),
                              (b"[::]", b"::")):
            target = parse_target(b"GET", b"http://%s:8081/x" % (literal,))
            self.assertEqual((target.host, target.port, target.authority), (host, 8081, b"[%s]:8081" % (host,)))
            target = parse_target(b"CONNECT", b"%s:443" % (literal,))
            self.assertEqual((target.host, target.authority), (host, b"[%s]:443" % (host,)))

    def test_malformed(self):
        """Unterminated, invalid, trailing junk, zones (raw or RFC 6874's %25) and empty brackets are 400s."""
        for authority in (b"[::1", b"[zz::1]", b"[::1]x", b"[fe80::1%eth0]", b"[fe80::1%25eth0]", b"[]", b"[[::1]]",
                          b"[::1]]", b"[::1]:", b"[::1]:x", b"[::1]:65536", b"[1:2:3:4:5:6:7:8:9]"):
            for method, target in ((b"GET", b"http://" + authority + b"/"), (b"CONNECT", authority + b":443")):
                if method == b"GET" and authority == b"[::1]:":
                    continue  # "host:" is the default port (RFC 3986).
                error = self.assertRaises(HTTPError, parse_target, method, target)
                self.assertEqual(error.status, 400, target)


class ConnectionOptionsTests(SynchronousTestCase):
    """
    Reading the options of the Connection fields, as L{keep_alive} (for
    C{close} and C{keep-alive}) and L{forward_headers} (for the fields they
    name) do.
    """

    def test_tokens(self):
        """Every Connection field line counts; case, spacing and empty elements do not matter."""
        headers = [
            (b"Connection", b"Keep-Alive ,  X-Foo"),
            (b"Host", b"h"),
            (b"CONNECTION", b",\tClose,,x-bar ,"),
            (b"Proxy-Connection", b"x-baz"),
        ]
        named = [(b"X-Foo", b"1"), (b"x-bar", b"2"), (b"X-Baz", b"3")]
        # x-foo and x-bar are options, so their fields go; x-baz came in
        # Proxy-Connection, which names no field.
        self.assertEqual(forward_headers(headers + named),
                         [(b"Host", b"h"), (b"X-Baz", b"3"), (b"Via", b"1.1 netproxy")])
        self.assertFalse(keep_alive((1, 1), headers))
        self.assertTrue(keep_alive((1, 0), headers[:1]))

    def test_none(self):
        """Without a Connection field there are no tokens."""
        headers = [(b"Host", b"h"), (b"Connection", b"")]
        self.assertEqual(forward_headers(headers), [(b"Host", b"h"), (b"Via", b"1.1 netproxy")])
        self.assertEqual((keep_alive((1, 1), headers), keep_alive((1, 0), headers)), (True, False))


class KeepAliveTests(SynchronousTestCase):
    """
    Whether a connection persists, by version and Connection options.
    """

    def test_table(self):
        """HTTP/1.1 persists unless closed, HTTP/1.0 only with keep-alive; Proxy-Connection counts too."""
        table = [
            ((1, 1), [], True),
            ((1, 1), [(b"Connection", b"close")], False),
            ((1, 1), [(b"Connection", b"keep-alive")], True),
            ((1, 1), [(b"Proxy-Connection", b"close")], False),
            ((1, 1), [(b"Proxy-Connection", b"Keep-Alive")], True),
            ((1, 0), [], False),
            ((1, 0), [(b"Connection", b"close")], False),
            ((1, 0), [(b"Connection", b"Keep-Alive")], True),
            ((1, 0), [(b"Proxy-Connection", b"close")], False),
            ((1, 0), [(b"proxy-connection", b"keep-alive")], True),
            ((1, 0), [(b"Connection", b"keep-alive"), (b"Proxy-Connection", b"close")], False),
            ((1, 0), [(b"Connection", b"x, keep-alive ")], True),
            ((1, 1), [(b"Connection", b"upgrade, CLOSE")], False),
            ((1, 0), [(b"Keep-Alive", b"timeout=5")], False),
            ((0, 9), [(b"Connection", b"keep-alive")], False),
        ]
        for version, headers, expected in table:
            self.assertEqual(keep_alive(version, headers), expected, (version, headers))


REQUEST = [
    (b"Host", b"example.com"),
    (b"User-Agent", b"curl/8.5.0"),
    (b"Accept", b"*/*"),
    (b"Accept-Language", b"en"),
    (b"Accept-Encoding", b"gzip, br"),
    (b"Proxy-Connection", b"keep-alive"),
    (b"Cookie", b"a=1"),
    (b"Cookie", b"b=2"),
    (b"Cache-Control", b"no-cache"),
    (b"Referer", b"http://example.com/"),
]


class ForwardHeadersTests(SynchronousTestCase):
    """
    Rewriting a message's fields for the next hop.
    """

    def test_hop_by_hop_removed(self):
        """Every hop-by-hop field goes, whatever the case of its name."""
        headers = []
        for name in sorted(HOP_BY_HOP):
            headers.append((name, b"v"))
            headers.append((name.upper(), b"v"))
            headers.append((name.title(), b"v"))
        headers.append((b"X-Kept", b"1"))
        self.assertEqual(forward_headers(headers), [(b"X-Kept", b"1"), (b"Via", b"1.1 netproxy")])

    def test_connection_named_removed(self):
        """Fields named by Connection options go, in any case; C{close} names nothing."""
        headers = [
            (b"x-foo", b"1"),
            (b"Connection", b"close, X-Foo"),
            (b"X-FOO", b"2"),
            (b"Connection", b"x-Bar"),
            (b"X-Bar", b"3"),
            (b"X-Baz", b"4"),
        ]
        self.assertEqual(forward_headers(headers), [(b"X-Baz", b"4"), (b"Via", b"1.1 netproxy")])

    def test_content_length_protected(self):
        """A Connection option cannot remove Content-Length, on which the body's framing depends."""
        headers = [(b"Connection", b"Content-Length"), (b"Content-Length", b"5")]
        self.assertEqual(forward_headers(headers), [(b"Content-Length", b"5"), (b"Via", b"1.1 netproxy")])

    def test_order_and_duplicates(self):
        """End-to-end fields keep their order, names and duplicates."""
        target = parse_target(b"GET", b"http://example.com/")
        self.assertEqual(
            forward_headers(REQUEST, target),
            [(b"Host", b"example.com")] + REQUEST[1:5] + REQUEST[6:] + [(b"Via", b"1.1 netproxy")],
        )

    def test_host_from_target(self):
        """A request gets exactly one Host, first, from the target, whatever the client sent."""
        target = parse_target(b"GET", b"http://[::1]:8080/")
        headers = [(b"Accept", b"*/*"), (b"host", b"other.example"), (b"HOST", b"third.example")]
        self.assertEqual(
            forward_headers(headers, target),
            [(b"Host", b"[::1]:8080"), (b"Accept", b"*/*"), (b"Via", b"1.1 netproxy")],
        )
        self.assertEqual(
            forward_headers([], target),
            [(b"Host", b"[::1]:8080"), (b"Via", b"1.1 netproxy")],
        )

    def test_host_survives_connection_option(self):
        """Even a client's C{Connection: host} leaves the request its Host."""
        target = parse_target(b"GET", b"http://example.com/")
        headers = [(b"Connection", b"host, x-a"), (b"X-A", b"1"), (b"X-B", b"2")]
        self.assertEqual(
            forward_headers(headers, target),
            [(b"Host", b"example.com"), (b"X-B", b"2"), (b"Via", b"1.1 netproxy")],
        )

    def test_response_host_kept(self):
        """For a response (no target) a Host field is an ordinary field."""
        self.assertEqual(
            forward_headers([(b"Host", b"h")]),
            [(b"Host", b"h"), (b"Via", b"1.1 netproxy")],
        )

    def test_via_appended(self):
        """Existing Via lines stay where they are and ours is a new last line."""
        headers = [(b"Via", b"1.0 fred, 1.1 p.example (Apache/1.1)"), (b"Accept", b"*/*"), (b"via", b"1.1 x")]
        self.assertEqual(forward_headers(headers), headers + [(b"Via", b"1.1 netproxy")])

    def test_via_version(self):
        """Our Via element names the version the message was received with."""
        self.assertEqual(forward_headers([], via_version=(1, 0)), [(b"Via", b"1.0 netproxy")])
        self.assertEqual(forward_headers([], via_version=(2, 0)), [(b"Via", b"2.0 netproxy")])

    def test_input_untouched(self):
        """The list given is not modified."""
        headers = list(REQUEST)
        forward_headers(headers, parse_target(b"GET", b"http://example.com/"))
        self.assertEqual(headers, REQUEST)


_NAMES = sorted(HOP_BY_HOP) + [b"host", b"via", b"accept", b"x-foo", b"x-bar", b"cookie", b"content-length"]


def _recase(name, mask):
    # Flip the case of the letters picked by mask's bits.
    return bytes(c ^ 0x20 if 97 <= c <= 122 and mask >> (i % 64) & 1 else c for i, c in enumerate(name))


_names = st.builds(_recase, st.sampled_from(_NAMES), st.integers(0, 2**64 - 1))
_connection_values = st.lists(_names, max_size=4).map(lambda names: b" ,".join(names))
_fields = st.one_of(
    st.tuples(_names, st.binary(max_size=4)),
    st.tuples(st.sampled_from([b"Connection", b"connection", b"CONNECTION"]), _connection_values),
)


def _connection_tokens(headers):
    """
    The property test's reference reading of the Connection options,
    written plainly and apart from the code under test.

    :returns: the lower-case tokens of every Connection field, empty
        elements left out.
    """
    tokens = set()
    for name, value in headers:
        if name.lower() == b"connection":
            tokens.update(token.strip(b" \t").lower() for token in value.split(b","))
    tokens.discard(b"")
    return tokens


class ForwardHeadersPropertyTests(SynchronousTestCase):
    """
    forward_headers on arbitrary field lists.
    """

    @settings(max_examples=200, deadline=None)
    @given(headers=st.lists(_fields, max_size=12), with_target=st.booleans())
    def test_property(self, headers, with_target):
        """No hop-by-hop or Connection-named field survives; the others keep their relative order."""
        target = Target(b"http", b"h", 80, b"/", b"h") if with_target else None
        named = _connection_tokens(headers) - {b"content-length"}
        out = forward_headers(headers, target)
        self.assertEqual(out[-1], (b"Via", b"1.1 netproxy"))
        if with_target:
            self.assertEqual(out[0], (b"Host", b"h"))
            out = out[1:]
        kept = [
            (name, value)
            for name, value in headers
            if name.lower() not in HOP_BY_HOP
            and name.lower() not in named
            and not (with_target and name.lower() == b"host")
        ]
        self.assertEqual(out[:-1], kept)
        for name, _ in out[:-1]:
            self.assertNotIn(name.lower(), HOP_BY_HOP)
            self.assertNotIn(name.lower(), named)


class IsLoopTests(SynchronousTestCase):
    """
    Spotting a request that already passed through us.
    """

    def test_ours(self):
        """Our pseudonym as received-by, in any form of Via element, is a loop."""
        for value in [
            b"1.1 netproxy",
            b"HTTP/1.1 netproxy",
            b"1.0 NetProxy",
            b"1.1 netproxy (comment)",
            b"1.0 fred, 1.1 netproxy",
            b"1.1 a (x, y), 1.1 netproxy (z)",
            b"1.1 netproxy\t(a, b)",
        ]:
            self.assertTrue(is_loop([(b"Via", value)]), value)
        self.assertTrue(is_loop([(b"Via", b"1.1 other"), (b"Accept", b"*/*"), (b"VIA", b"1.1 netproxy")]))

    def test_not_ours(self):
        """Other proxies, names that merely contain ours, and comments are not loops."""
        for headers in [
            [],
            [(b"Via", b"1.1 squid")],
            [(b"Via", b"1.1 netproxyish")],
            [(b"Via", b"1.1 my-netproxy")],
            [(b"Via", b"1.1 netproxy.example:3128")],
            [(b"Via", b"1.1 squid (netproxy)")],
            [(b"Via", b"1.1 squid (see, 1.1 netproxy)")],
            [(b"Via", b"netproxy")],
            [(b"X-Via", b"1.1 netproxy")],
            [(b"Server", PSEUDONYM)],
        ]:
            self.assertFalse(is_loop(headers), headers)

    def test_own_output_is_loop(self):
        """What forward_headers adds is recognised by is_loop."""
        self.assertTrue(is_loop(forward_headers([(b"Accept", b"*/*")])))
        self.assertTrue(is_loop(forward_headers([], via_version=(1, 0))))

    def test_own_pseudonym(self):
        """With a pseudonym of its own, a proxy adds it to Via and sees a loop by it alone, in any case."""
        headers = forward_headers([(b"Via", b"1.1 netproxy")], pseudonym=b"netproxy-1a2b")
        self.assertEqual(headers, [(b"Via", b"1.1 netproxy"), (b"Via", b"1.1 netproxy-1a2b")])
        self.assertEqual(forward_headers([], via_version=(1, 0), pseudonym=b"Child")[-1], (b"Via", b"1.0 Child"))
        self.assertTrue(is_loop(headers, b"netproxy-1a2b"))
        self.assertTrue(is_loop([(b"Via", b"1.1 CHILD")], b"Child"))
        self.assertFalse(is_loop([(b"Via", b"1.1 netproxy")], b"netproxy-1a2b"))
        self.assertFalse(is_loop([(b"Via", b"1.1 netproxy-1a2b")]))

    def test_any_netproxy(self):
        """Asked about any netproxy, the default names of every instance count, other names do not."""
        for value in (b"1.1 netproxy", b"1.1 NetProxy-1a2b", b"1.0 squid, 1.1 netproxy-x (c)", b"1.1 mine"):
            self.assertTrue(is_loop([(b"Via", value)], b"mine", any_netproxy=True), value)
        for value in (b"1.1 netproxyish", b"1.1 my-netproxy", b"1.1 squid (netproxy-1)", b"1.1 netproxy.example"):
            self.assertFalse(is_loop([(b"Via", value)], b"mine", any_netproxy=True), value)


class HeadBytesTests(SynchronousTestCase):
    """
    Serialising request and response heads.
    """

    def test_request(self):
        """A request head is the request line in HTTP/1.1, the field lines and an empty line."""
        self.assertEqual(
            request_head_bytes(b"GET", b"/p?q", [(b"Host", b"h"), (b"Accept", b"*/*")]),
            b"GET /p?q HTTP/1.1\r\nHost: h\r\nAccept: */*\r\n\r\n",
        )

    def test_request_no_fields(self):
        """A request head without fields ends right after the request line."""
        self.assertEqual(request_head_bytes(b"OPTIONS", b"*", []), b"OPTIONS * HTTP/1.1\r\n\r\n")

    def test_response(self):
        """A response head is the status line, the field lines and an empty line."""
        self.assertEqual(
            response_head_bytes(200, b"OK", [(b"Content-Length", b"0"), (b"Via", b"1.1 netproxy")]),
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nVia: 1.1 netproxy\r\n\r\n",
        )

    def test_response_version_and_empty_reason(self):
        """The version is the one given, and an empty reason keeps its space."""
        self.assertEqual(response_head_bytes(204, b"", [], (1, 0)), b"HTTP/1.0 204 \r\n\r\n")


def _split_response(data):
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = [tuple(line.split(b": ", 1)) for line in lines]
    return status_line, headers, body


class ErrorResponseTests(SynchronousTestCase):
    """
    The proxy's own error pages.
    """

    def test_status_lines(self):
        """Each error status gets its standard reason phrase, in the status line and the page."""
        reasons = {
            400: "Bad Request",
            403: "Forbidden",
            407: "Proxy Authentication Required",
            408: "Request Timeout",
            # Python 3.13 renamed it after RFC 9110; either is standard.
            413: HTTPStatus(413).phrase,
            431: "Request Header Fields Too Large",
            502: "Bad Gateway",
            504: "Gateway Timeout",
        }
        for status, reason in reasons.items():
            status_line, _, body = _split_response(error_response(status, "why"))
            self.assertEqual(status_line, f"HTTP/1.1 {status} {reason}".encode())
            title = f"{status} {reason}".encode()
            self.assertIn(b"<title>" + title + b"</title>", body)
            self.assertIn(b"<h1>" + title + b"</h1>", body)

    def test_page(self):
        """The whole response for a 400, byte for byte."""
        body = (
            b"<html><head><title>400 Bad Request</title></head><body><h1>400 Bad Request</h1>"
            b"<p>bad port</p></body></html>"
        )
        self.assertEqual(
            error_response(400, "bad port"),
            b"HTTP/1.1 400 Bad Request\r\n"
            b"Content-Type: text/html; charset=utf-8\r\n"
            b"Content-Length: %d\r\n"
            b"Connection: close\r\n\r\n" % (len(body),) + body,
        )

    def test_content_length(self):
        """Content-Length is the length of the body in bytes, non-ASCII text included."""
        for message in ["", "short", "caf\u00e9 \u2603 " * 50, "x\udcff"]:
            _, headers, body = _split_response(error_response(502, message))
            self.assertEqual(dict(headers)[b"Content-Length"], str(len(body)).encode())

    def test_message_escaped(self):
        """The message is HTML-escaped, since it may quote client input."""
        data = error_response(400, "bad host <script>alert('x')</script> & \"y\"")
        self.assertNotIn(b"<script>", data)
        self.assertIn(b"&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;y&quot;", data)

    def test_close(self):
        """C{Connection: close} is sent exactly when asked for."""
        _, headers, _ = _split_response(error_response(403, "no", close=True))
        self.assertIn((b"Connection", b"close"), headers)
        _, headers, _ = _split_response(error_response(403, "no", close=False))
        self.assertNotIn(b"Connection", dict(headers))

    def test_extra_headers(self):
        """Extra fields are sent after the standard ones."""
        extra = [(b"Proxy-Authenticate", b'Basic realm="netproxy"')]
        _, headers, _ = _split_response(error_response(407, "credentials needed", extra_headers=extra))
        self.assertEqual(headers[-1], extra[0])
        self.assertEqual(headers[0], (b"Content-Type", b"text/html; charset=utf-8"))

    def test_unknown_status(self):
        """A status without a standard phrase still gets a valid status line."""
        status_line, _, body = _split_response(error_response(599, "odd"))
        self.assertEqual(status_line, b"HTTP/1.1 599 ")
        self.assertIn(b"<title>599</title>", body)

    def test_no_traceback(self):
        """The page carries the message only, never Python internals."""
        data = error_response(502, str(HTTPError(502, "upstream refused the connection")))
        self.assertIn(b"<p>upstream refused the connection</p>", data)
        self.assertIsNone(re.search(rb"Traceback|File \"", data))
