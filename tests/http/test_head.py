"""
Tests for L{netproxy.http.head}: request and status lines, header fields,
line endings, the status of every rejection, and L{HeadReader} finding the
end of a head however the stream is chunked.
"""

from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import HTTPError
from netproxy.http.head import (
    MAX_FIELDS,
    MAX_HEAD,
    MAX_REQUEST_LINE,
    HeadReader,
    RequestHead,
    ResponseHead,
    header_values,
    parse_request_head,
    parse_response_head,
)

TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

SMALL_HEAD = (
    b"GET http://example.com/a?b=c HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
)
SMALL_FIELDS = [(b"Host", b"example.com"), (b"Accept", b"*/*")]


def split_at(data, cuts):
    """
    Split C{data} at the given offsets.

    :returns: the list of chunks, some possibly empty.
    """
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


def read_head(chunks, parse=parse_request_head, max_size=MAX_HEAD):
    """
    Feed C{chunks} to a new L{HeadReader} until it returns a head.

    :returns: C{(head, rest)}, where C{rest} also holds every chunk after
        the one that completed the head; or C{(None, b"")}.
    """
    reader = HeadReader(parse, max_size)
    for i, chunk in enumerate(chunks):
        head, rest = reader.feed(chunk)
        if head is not None:
            return head, rest + b"".join(chunks[i + 1 :])
        if rest:
            raise AssertionError(f"rest {rest!r} returned without a head")
    return None, b""


class RejectionMixin:
    """
    Assertions on the L{HTTPError} a head is rejected with.
    """

    def assert_rejected(self, data, status, parse=parse_request_head):
        """
        Assert that parsing C{data} raises L{HTTPError} with C{status}.

        :returns: the error.
        """
        error = self.assertRaises(HTTPError, parse, data)
        self.assertEqual(error.status, status, str(error))
        self.assertTrue(error.close)
        return error


class RequestLineTests(RejectionMixin, SynchronousTestCase):
    """
    Request lines: method, request-target and version (RFC 9112 section 3).
    """

    def test_absolute_form(self):
        """A GET in absolute-form keeps its method, target and version."""
        self.assertEqual(
            parse_request_head(SMALL_HEAD),
            RequestHead(b"GET", b"http://example.com/a?b=c", (1, 1), SMALL_FIELDS),
        )

    def test_authority_form(self):
        """A CONNECT in authority-form keeps host and port as its target."""
        head = parse_request_head(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )
        self.assertEqual((head.method, head.target), (b"CONNECT", b"example.com:443"))

    def test_origin_form(self):
        """An origin-form target is kept as sent."""
        head = parse_request_head(b"GET /metrics?x=%20 HTTP/1.1\r\nHost: proxy\r\n\r\n")
        self.assertEqual(head.target, b"/metrics?x=%20")

    def test_asterisk_form(self):
        """OPTIONS * is a valid request line."""
        self.assertEqual(parse_request_head(b"OPTIONS * HTTP/1.1\r\n\r\n").target, b"*")

    def test_http_1_0(self):
        """HTTP/1.0 is parsed as version (1, 0)."""
        self.assertEqual(
            parse_request_head(b"GET http://a/ HTTP/1.0\r\n\r\n").version, (1, 0)
        )

    def test_no_fields(self):
        """A head with only a request line has no fields."""
        self.assertEqual(parse_request_head(b"GET / HTTP/1.1\r\n\r\n").headers, [])

    def test_empty_line_optional(self):
        """The head parses the same without its final empty line or last CRLF."""
        expected = parse_request_head(SMALL_HEAD)
        self.assertEqual(parse_request_head(SMALL_HEAD[:-2]), expected)
        self.assertEqual(parse_request_head(SMALL_HEAD[:-4]), expected)

    def test_method_case_kept(self):
        """Methods are case-sensitive tokens and kept as sent."""
        self.assertEqual(parse_request_head(b"get / HTTP/1.1\r\n\r\n").method, b"get")

    def test_extension_method(self):
        """Any token is a method, including its punctuation characters."""
        self.assertEqual(
            parse_request_head(TCHAR + b" / HTTP/1.1\r\n\r\n").method, TCHAR
        )

    def test_obs_text_in_target(self):
        """Raw UTF-8 in a target is kept as sent."""
        target = "/caf\u00e9".encode()
        self.assertEqual(
            parse_request_head(b"GET " + target + b" HTTP/1.1\r\n\r\n").target, target
        )

    def test_extra_spaces(self):
        """Anything but single spaces between the three parts is a 400."""
        for line in [
            b"GET  / HTTP/1.1",
            b"GET /  HTTP/1.1",
            b" GET / HTTP/1.1",
            b"GET / HTTP/1.1 ",
            b"GET\t/ HTTP/1.1",
            b"GET / HTTP/1.1 x",
            b"GET /",
            b"GET",
            b"",
        ]:
            self.assert_rejected(line + b"\r\n\r\n", 400)

    def test_empty_head(self):
        """An empty head, or only an empty line, is a 400."""
        for data in [b"", b"\r\n", b"\n", b"\r\n\r\n"]:
            self.assert_rejected(data, 400)
            self.assert_rejected(data, 502, parse_response_head)

    def test_empty_target(self):
        """An empty request-target is a 400."""
        self.assert_rejected(b"GET  HTTP/1.1\r\n\r\n", 400)

    def test_control_bytes_in_target(self):
        """Every byte below 0x21 and DEL in the target is a 400."""
        for byte in [*range(0x21), 0x7F]:
            if byte in b"\r\n":
                continue
            data = b"GET /a" + bytes([byte]) + b"b HTTP/1.1\r\n\r\n"
            self.assert_rejected(data, 400)

    def test_invalid_method(self):
        """A method with a non-token character is a 400."""
        for method in [b"GE(T", b"G\xe9T", b"GET:", b"G\x01T", b"G\x7fT"]:
            self.assert_rejected(method + b" / HTTP/1.1\r\n\r\n", 400)

    def test_malformed_version(self):
        """A version that is not HTTP/DIGIT.DIGIT is a 400."""
        for version in [
            b"HTTP/x",
            b"http/1.1",
            b"HTTP/1",
            b"HTTP/1.1.1",
            b"HTTP/10.0",
            b"HTTP 1.1",
            b"HTTP/1.x",
            b"HTTP/1,1",
        ]:
            self.assert_rejected(b"GET / " + version + b"\r\n\r\n", 400)

    def test_unsupported_version(self):
        """A well-formed version other than 1.0 and 1.1 is a 505."""
        for version in [b"HTTP/2.0", b"HTTP/3.0", b"HTTP/1.2", b"HTTP/0.9"]:
            self.assert_rejected(b"GET / " + version + b"\r\n\r\n", 505)

    def test_request_line_limit(self):
        """A request line of exactly 8 KiB is accepted."""
        target = b"/" + b"a" * (MAX_REQUEST_LINE - len(b"GET / HTTP/1.1"))
        line = b"GET " + target + b" HTTP/1.1"
        self.assertEqual(len(line), MAX_REQUEST_LINE)
        self.assertEqual(parse_request_head(line + b"\r\n\r\n").target, target)

    def test_request_line_too_long(self):
        """A request line over 8 KiB is a 431 naming the request line."""
        target = b"/" + b"a" * (MAX_REQUEST_LINE - len(b"GET / HTTP/1.1") + 1)
        error = self.assert_rejected(b"GET " + target + b" HTTP/1.1\r\n\r\n", 431)
        self.assertEqual(str(error), "request line too long")


class FieldTests(RejectionMixin, SynchronousTestCase):
    """
    Header fields (RFC 9110 section 5, RFC 9112 section 5).
    """

    def parse_fields(self, *lines):
        """
        :returns: the fields of a request with the given field lines.
        """
        return parse_request_head(
            b"GET / HTTP/1.1\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"
        ).headers

    def test_order_case_and_duplicates(self):
        """Fields keep their order, their names' case and their duplicates."""
        self.assertEqual(
            self.parse_fields(
                b"hOsT: a",
                b"Accept: x",
                b"accept: y",
                b"Content-Length: 3",
                b"Content-Length: 3",
            ),
            [
                (b"hOsT", b"a"),
                (b"Accept", b"x"),
                (b"accept", b"y"),
                (b"Content-Length", b"3"),
                (b"Content-Length", b"3"),
            ],
        )

    def test_framing_fields_not_interpreted(self):
        """Framing fields are returned as they are, for the framing code to judge."""
        self.assertEqual(
            self.parse_fields(b"Transfer-Encoding: chunked", b"Content-Length: 5, 6"),
            [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5, 6")],
        )

    def test_ows_trimmed(self):
        """Spaces and tabs around a value go; those inside it stay."""
        self.assertEqual(
            self.parse_fields(b"A:x", b"B: \t x  y \t ", b"C:\t\tz"),
            [(b"A", b"x"), (b"B", b"x  y"), (b"C", b"z")],
        )

    def test_empty_value(self):
        """A field with only whitespace after its colon has an empty value."""
        self.assertEqual(
            self.parse_fields(b"A:", b"B:   \t"), [(b"A", b""), (b"B", b"")]
        )

    def test_colons_in_value(self):
        """Only the first colon separates name and value."""
        self.assertEqual(
            self.parse_fields(b"Host: [::1]:8080"), [(b"Host", b"[::1]:8080")]
        )

    def test_obs_text_and_controls_in_value(self):
        """Values keep obs-text, HTAB and control bytes other than NUL, CR, LF."""
        value = bytes(range(0x80, 0x100)) + b"a\tb\x01\x0b\x0c\x7f"
        self.assertEqual(self.parse_fields(b"X: " + value), [(b"X", value)])

    def test_name_characters(self):
        """Every token character is allowed in a field name."""
        self.assertEqual(self.parse_fields(TCHAR + b": v"), [(TCHAR, b"v")])

    def test_line_without_colon(self):
        """A field line without a colon is a 400."""
        error = self.assert_rejected(
            b"GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", 400
        )
        self.assertEqual(str(error), "header line without colon")

    def test_empty_name(self):
        """A field line starting with its colon is a 400."""
        error = self.assert_rejected(b"GET / HTTP/1.1\r\n: v\r\n\r\n", 400)
        self.assertEqual(str(error), "empty header field name")

    def test_whitespace_before_colon(self):
        """A space or tab between a field name and its colon is a 400."""
        for line in [b"Host : a", b"Host\t: a", b"Content-Length :5"]:
            error = self.assert_rejected(
                b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n", 400
            )
            self.assertEqual(
                str(error), "whitespace between header field name and colon"
            )

    def test_invalid_name(self):
        """A field name with a non-token byte is a 400."""
        for name in [b"X@Y", b"X(Y", b"X\xe9", b"X Y", b"X\x01", b"X/Y"]:
            self.assert_rejected(b"GET / HTTP/1.1\r\n" + name + b": v\r\n\r\n", 400)

    def test_obsolete_line_folding(self):
        """A field line starting with a space or tab is a 400, not folded."""
        for fold in [b" folded", b"\tfolded", b" X: y"]:
            error = self.assert_rejected(
                b"GET / HTTP/1.1\r\nA: b\r\n" + fold + b"\r\n\r\n", 400
            )
            self.assertEqual(str(error), "obsolete line folding in header section")

    def test_whitespace_before_first_field(self):
        """Whitespace between the request line and the first field is a 400."""
        self.assert_rejected(b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400)

    def test_nul_in_value(self):
        """A NUL in a value is a 400."""
        error = self.assert_rejected(b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", 400)
        self.assertEqual(str(error), "NUL in message head")

    def test_lf_in_value(self):
        """An LF inside a value ends the line, and what follows is no field: a 400."""
        self.assert_rejected(b"GET / HTTP/1.1\r\nX: a\nb\r\n\r\n", 400)

    def test_max_fields(self):
        """Exactly 100 fields are accepted."""
        self.assertEqual(len(self.parse_fields(*[b"X: 1"] * MAX_FIELDS)), MAX_FIELDS)

    def test_too_many_fields(self):
        """More than 100 fields is a 431."""
        lines = b"X: 1\r\n" * (MAX_FIELDS + 1)
        self.assert_rejected(b"GET / HTTP/1.1\r\n" + lines + b"\r\n", 431)

    def test_max_fields_parameter(self):
        """The field limit is a parameter."""
        data = b"GET / HTTP/1.1\r\n" + b"X: 1\r\n" * 3 + b"\r\n"
        self.assertEqual(len(parse_request_head(data, max_fields=3).headers), 3)
        self.assert_rejected(data, 431, partial(parse_request_head, max_fields=2))


class LineEndingTests(RejectionMixin, SynchronousTestCase):
    """
    CRLF, bare LF and bare CR (RFC 9112 section 2.2).
    """

    def test_bare_lf(self):
        """A head with bare LF line endings parses like its CRLF form."""
        self.assertEqual(
            parse_request_head(SMALL_HEAD.replace(b"\r\n", b"\n")),
            parse_request_head(SMALL_HEAD),
        )

    def test_mixed_endings(self):
        """CRLF and bare LF may be mixed in one head."""
        data = (
            b"GET http://example.com/a?b=c HTTP/1.1\n"
            b"Host: example.com\r\n"
            b"Accept: */*\n"
            b"\r\n"
        )
        self.assertEqual(parse_request_head(data), parse_request_head(SMALL_HEAD))

    def test_bare_cr(self):
        """A CR not followed by LF anywhere in the head is a 400."""
        for data in [
            b"GET / HTTP/1.1\rHost: a\r\n\r\n",
            b"GET /\r HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nX\r: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\r\r\n\r\n",
            b"GET / HTTP/1.1\nX: a\r\n\r\r\n",
            b"GET / HTTP/1.1\r\nX: a\r",
        ]:
            error = self.assert_rejected(data, 400)
            self.assertEqual(str(error), "bare CR in message head")


class ResponseTests(RejectionMixin, SynchronousTestCase):
    """
    Status lines and response heads; every error is a 502.
    """

    def test_ok(self):
        """A 200 with reason and fields is parsed."""
        self.assertEqual(
            parse_response_head(
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nVary: a\r\nVary: b\r\n\r\n"
            ),
            ResponseHead(
                (1, 1),
                200,
                b"OK",
                [(b"Content-Length", b"2"), (b"Vary", b"a"), (b"Vary", b"b")],
            ),
        )

    def test_http_1_0_reason_with_spaces(self):
        """An HTTP/1.0 response keeps a reason phrase with spaces."""
        self.assertEqual(
            parse_response_head(b"HTTP/1.0 404 Not Found\r\n\r\n"),
            ResponseHead((1, 0), 404, b"Not Found", []),
        )

    def test_missing_reason(self):
        """A status line without a space and reason has an empty reason."""
        self.assertEqual(
            parse_response_head(b"HTTP/1.1 200\r\nA: b\r\n\r\n"),
            ResponseHead((1, 1), 200, b"", [(b"A", b"b")]),
        )

    def test_empty_reason(self):
        """A status line ending in a space has an empty reason."""
        self.assertEqual(parse_response_head(b"HTTP/1.1 204 \r\n\r\n").reason, b"")

    def test_odd_reason(self):
        """Reason phrases with obs-text, tabs and extra spaces are kept as sent."""
        self.assertEqual(
            parse_response_head(b"HTTP/1.1 200  Tr\xe8s\tbien \r\n\r\n").reason,
            b" Tr\xe8s\tbien ",
        )

    def test_status_bounds(self):
        """Status codes 100 and 599 are accepted."""
        self.assertEqual(
            parse_response_head(b"HTTP/1.1 100 Continue\r\n\r\n").status, 100
        )
        self.assertEqual(parse_response_head(b"HTTP/1.1 599\r\n\r\n").status, 599)

    def test_bad_status_code(self):
        """A status code that is not three digits from 100 to 599 is a 502."""
        for code in [
            b"099",
            b"000",
            b"600",
            b"999",
            b"20",
            b"2000",
            b"2x0",
            b"+20",
            b" 200",
            b"\xd9\xa2\xd9\xa0\xd9\xa0",
        ]:
            error = self.assert_rejected(
                b"HTTP/1.1 " + code + b" OK\r\n\r\n", 502, parse_response_head
            )
            self.assertTrue(
                str(error).startswith("upstream sent a malformed response head")
            )

    def test_bad_version(self):
        """A status line without HTTP/1.0 or HTTP/1.1 is a 502."""
        for line in [
            b"HTTP/2 200 OK",
            b"HTTP/2.0 200 OK",
            b"http/1.1 200 OK",
            b"HTTP/1.1",
            b"HTTP/1.1200 OK",
            b"ICY 200 OK",
            b"",
        ]:
            self.assert_rejected(line + b"\r\n\r\n", 502, parse_response_head)

    def test_field_errors_are_502(self):
        """Bad fields, bare CR and too many fields in a response are 502s."""
        for data in [
            b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nnocolon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: b\rc\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: \x00\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n" + b"A: b\r\n" * (MAX_FIELDS + 1) + b"\r\n",
        ]:
            error = self.assert_rejected(data, 502, parse_response_head)
            self.assertTrue(
                str(error).startswith("upstream sent a malformed response head: ")
            )

    def test_bare_lf(self):
        """A response head with bare LF line endings is accepted."""
        self.assertEqual(
            parse_response_head(b"HTTP/1.1 200 OK\nA: b\n\n"),
            ResponseHead((1, 1), 200, b"OK", [(b"A", b"b")]),
        )


class HeaderValuesTests(SynchronousTestCase):
    """
    L{header_values} looks fields up by name.
    """

    def test_case_insensitive_in_order(self):
        """Every value of the field comes back in order, whatever the name's case."""
        headers = [
            (b"Vary", b"a"),
            (b"Host", b"h"),
            (b"VARY", b"b"),
            (b"vary", b""),
            (b"Varyx", b"no"),
        ]
        self.assertEqual(header_values(headers, b"vary"), [b"a", b"b", b""])

    def test_absent(self):
        """A field that is not there gives an empty list."""
        self.assertEqual(header_values([(b"Host", b"h")], b"via"), [])


class HeadReaderTests(SynchronousTestCase):
    """
    L{HeadReader} finds the end of a head in a chunked stream.
    """

    def test_not_a_request_at_once(self):
        """Bytes no request line starts with are refused as they come, not when a head ends that never will."""
        for first in (b"\x16\x03\x01", b"\r\n\x00", b"GET\xff", b" GET", b"G\x80ET /"):
            error = self.assertRaises(HTTPError, HeadReader(parse_request_head).feed, first)
            self.assertEqual((error.status, str(error)[:21]), (400, "not an HTTP request: "), first)

    def test_method_checked_across_chunks(self):
        """A method arriving a byte at a time is checked as it grows, each byte once."""
        reader = HeadReader(parse_request_head)
        for byte in b"\r\nPROPFIND":
            self.assertEqual(reader.feed(bytes([byte])), (None, b""))
        self.assertRaises(HTTPError, reader.feed, b"<")

    def test_line_ends_before_the_method(self):
        """A request line with no space before its end is 400 at once."""
        error = self.assertRaises(HTTPError, HeadReader(parse_request_head).feed, b"HELLO\r\n")
        self.assertEqual(str(error), "malformed request line")

    def test_after_the_method(self):
        """Past the method, the rest of the line is the parser's, at the end of the head, as before."""
        reader = HeadReader(parse_request_head)
        self.assertEqual(reader.feed(b"GET \x00\x01 "), (None, b""))
        self.assertRaises(HTTPError, reader.feed, b"HTTP/1.1\r\n\r\n")

    def test_next_request_checked(self):
        """The check starts afresh with each head of a connection."""
        reader = HeadReader(parse_request_head)
        head, rest = reader.feed(SMALL_HEAD + b"\x16\x03")
        self.assertIsNotNone(head)
        self.assertRaises(HTTPError, reader.feed, rest)

    def test_responses_not_checked(self):
        """A response head is not a request: its reader leaves the status line to the parser."""
        reader = HeadReader(parse_response_head)
        self.assertEqual(reader.feed(b"\x16\x03"), (None, b""))

    def test_one_chunk(self):
        """A whole head in one chunk is parsed with nothing left over."""
        head, rest = HeadReader(parse_request_head).feed(SMALL_HEAD)
        self.assertEqual(head.headers, SMALL_FIELDS)
        self.assertEqual(rest, b"")

    def test_incomplete(self):
        """An incomplete head gives (None, b"")."""
        reader = HeadReader(parse_request_head)
        for chunk in [b"GET / HTTP/1.1\r\n", b"Host: a\r\n", b"\r"]:
            self.assertEqual(reader.feed(chunk), (None, b""))
        head, rest = reader.feed(b"\n")
        self.assertEqual((head.headers, rest), ([(b"Host", b"a")], b""))

    def test_empty_chunks(self):
        """Empty chunks change nothing."""
        reader = HeadReader(parse_request_head)
        self.assertEqual(reader.feed(b""), (None, b""))
        self.assertEqual(reader.feed(SMALL_HEAD[:5]), (None, b""))
        self.assertEqual(reader.feed(b""), (None, b""))
        self.assertEqual(reader.feed(SMALL_HEAD[5:])[0].headers, SMALL_FIELDS)

    def test_split_at_every_offset(self):
        """Splitting a head and body in two anywhere gives the same head and rest."""
        stream = b"\r\n" + SMALL_HEAD + b"body"
        expected = (parse_request_head(SMALL_HEAD), b"body")
        for cut in range(len(stream) + 1):
            self.assertEqual(read_head(split_at(stream, [cut])), expected)

    def test_split_at_every_pair_of_offsets(self):
        """Splitting a bare-LF head in three anywhere gives the same head and rest."""
        stream = b"\nGET / HTTP/1.1\nA: b\n\nbody"
        expected = (parse_request_head(b"GET / HTTP/1.1\nA: b\n"), b"body")
        for first in range(len(stream) + 1):
            for second in range(first, len(stream) + 1):
                self.assertEqual(read_head(split_at(stream, [first, second])), expected)

    def test_one_byte_at_a_time(self):
        """A head fed one byte per chunk is found at its empty line."""
        stream = SMALL_HEAD + b"xyz"
        head, rest = read_head([stream[i : i + 1] for i in range(len(stream))])
        self.assertEqual((head.headers, rest), (SMALL_FIELDS, b"xyz"))

    def test_body_in_same_chunk(self):
        """Body bytes after the empty line come back exactly as rest."""
        body = b"\r\n\r\nnot a head\n\n\x00"
        head, rest = HeadReader(parse_request_head).feed(SMALL_HEAD + body)
        self.assertEqual((head.headers, rest), (SMALL_FIELDS, body))

    def test_pipelined_request(self):
        """A pipelined second request stays in rest, to be fed back for its head."""
        second = b"GET http://b/ HTTP/1.1\r\nHost: b\r\n\r\n"
        reader = HeadReader(parse_request_head)
        head, rest = reader.feed(SMALL_HEAD + second)
        self.assertEqual((head.target, rest), (b"http://example.com/a?b=c", second))
        head, rest = reader.feed(rest)
        self.assertEqual(
            (head.target, head.headers, rest), (b"http://b/", [(b"Host", b"b")], b"")
        )

    def test_first_empty_line_ends_head(self):
        """A bare-LF empty line ends the head even if a CRLF one follows."""
        head, rest = HeadReader(parse_request_head).feed(
            b"GET / HTTP/1.1\nA: b\n\nX: smuggled\r\n\r\n"
        )
        self.assertEqual((head.headers, rest), ([(b"A", b"b")], b"X: smuggled\r\n\r\n"))

    def test_lf_crlf_empty_line(self):
        """A bare LF followed by a CRLF empty line ends the head."""
        head, rest = HeadReader(parse_request_head).feed(
            b"GET / HTTP/1.1\r\nA: b\n\r\nbody"
        )
        self.assertEqual((head.headers, rest), ([(b"A", b"b")], b"body"))

    def test_leading_empty_lines(self):
        """CRLF and LF empty lines before the request line are skipped."""
        for chunks in [
            [b"\r\n\r\n\n" + SMALL_HEAD],
            [b"\r", b"\n", b"\r\n", SMALL_HEAD],
            [b"\r\n\r", b"\n" + SMALL_HEAD],
        ]:
            head, rest = read_head(chunks)
            self.assertEqual((head.headers, rest), (SMALL_FIELDS, b""))

    def test_leading_bare_cr(self):
        """A bare CR before the request line is a 400."""
        reader = HeadReader(parse_request_head)
        error = self.assertRaises(HTTPError, reader.feed, b"\r\rGET / HTTP/1.1\r\n\r\n")
        self.assertEqual(error.status, 400)

    def test_parse_errors_propagate(self):
        """What the parser raises comes out of feed."""
        reader = HeadReader(parse_request_head)
        error = self.assertRaises(
            HTTPError, reader.feed, b"GET / HTTP/1.1\r\nA : b\r\n\r\n"
        )
        self.assertEqual(error.status, 400)

    def test_head_at_limit(self):
        """A head of exactly max_size bytes, empty line included, is accepted."""
        head = b"GET / HTTP/1.1\r\nX: " + b"a" * (200 - 23) + b"\r\n\r\n"
        self.assertEqual(len(head), 200)
        self.assertEqual(
            HeadReader(parse_request_head, 200).feed(head + b"rest")[1], b"rest"
        )

    def test_head_over_limit(self):
        """A head one byte over max_size is a 431, even when it arrives whole."""
        head = b"GET / HTTP/1.1\r\nX: " + b"a" * (201 - 23) + b"\r\n\r\n"
        for chunks in [[head], [head[:100], head[100:]], [head[:-1], head[-1:]]]:
            reader = HeadReader(parse_request_head, 200)
            with self.assertRaises(HTTPError) as raised:
                for chunk in chunks:
                    reader.feed(chunk)
            self.assertEqual(raised.exception.status, 431)

    def test_endless_head(self):
        """An endless head is a 431 before much more than max_size bytes are fed."""
        reader = HeadReader(parse_request_head)
        chunk = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        fed = len(b"GET / HTTP/1.1\r\n")
        reader.feed(b"GET / HTTP/1.1\r\n")
        with self.assertRaises(HTTPError) as raised:
            while fed < 10 * MAX_HEAD:
                reader.feed(chunk)
                fed += len(chunk)
        self.assertEqual(raised.exception.status, 431)
        self.assertEqual(
            str(raised.exception), f"request head larger than {MAX_HEAD} bytes"
        )
        self.assertLess(fed, MAX_HEAD + len(chunk))

    def test_endless_empty_lines(self):
        """Empty lines before the request line count against max_size."""
        reader = HeadReader(parse_request_head, 100)
        reader.feed(b"\r\n" * 50)
        self.assertEqual(self.assertRaises(HTTPError, reader.feed, b"\n").status, 431)

    def test_large_head_byte_by_byte(self):
        """A 60 KB head fed one byte at a time is found, in linear time."""
        head = b"GET / HTTP/1.1\r\n" + (b"X: " + b"a" * 995 + b"\r\n") * 60 + b"\r\n"
        reader = HeadReader(parse_request_head, len(head))
        for i in range(len(head) - 1):
            self.assertEqual(reader.feed(head[i : i + 1]), (None, b""))
        self.assertEqual(len(reader.feed(head[-1:])[0].headers), 60)

    def test_response_reader(self):
        """A response reader parses status lines; too large a response head is a 502."""
        head, rest = HeadReader(parse_response_head).feed(
            b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody"
        )
        self.assertEqual(
            (head, rest), (ResponseHead((1, 1), 200, b"OK", [(b"A", b"b")]), b"body")
        )
        reader = HeadReader(parse_response_head, 50)
        self.assertEqual(
            self.assertRaises(
                HTTPError, reader.feed, b"HTTP/1.1 200 OK\r\n" + b"a" * 50
            ).status,
            502,
        )

    def test_reusable_after_head(self):
        """After a head split across chunks, the reader starts afresh."""
        reader = HeadReader(parse_request_head)
        reader.feed(b"\r\n" + SMALL_HEAD[:10])
        self.assertEqual(reader.feed(SMALL_HEAD[10:])[1], b"")
        head, rest = reader.feed(b"\r\n" + SMALL_HEAD)
        self.assertEqual((head.headers, rest), (SMALL_FIELDS, b""))


token = st.text(alphabet=TCHAR.decode(), min_size=1, max_size=12).map(str.encode)
# Random bytes less those a target or a value may not hold.
target_bytes = st.binary(min_size=1, max_size=40).map(
    lambda b: b"/" + b.translate(None, bytes(range(0x21)) + b"\x7f")
)
value_bytes = st.binary(max_size=40).map(lambda b: b.translate(None, b"\x00\r\n"))
ows = st.sampled_from([b"", b" ", b"\t", b" \t "])
line_end = st.sampled_from([b"\r\n", b"\r\n", b"\n"])


@st.composite
def chunked_requests(draw):
    """
    :returns: the chunks of a stream holding a random valid request head
        and body, and the head and rest expected from them.
    """
    method, target = draw(token), draw(target_bytes)
    version = draw(st.sampled_from([(1, 0), (1, 1)]))
    fields = draw(
        st.lists(st.tuples(token, ows, value_bytes, ows, line_end), max_size=20)
    )
    body = draw(st.binary(max_size=30))
    stream = b"\r\n" * draw(st.integers(0, 2))
    stream += b"%s %s HTTP/%d.%d%s" % (method, target, *version, draw(line_end))
    for name, before, value, after, end in fields:
        stream += name + b":" + before + value + after + end
    stream += draw(line_end) + body
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=6))
    headers = [(name, value.strip(b" \t")) for name, _, value, _, _ in fields]
    return split_at(stream, cuts), RequestHead(method, target, version, headers), body


class PropertyTests(SynchronousTestCase):
    """
    Random valid heads, randomly chunked, parse back to what was sent.
    """

    @settings(max_examples=200, deadline=None)
    @given(chunked_requests())
    def test_round_trip(self, example):
        """A valid request head in random chunks parses back, the body left over."""
        chunks, expected, body = example
        self.assertEqual(read_head(chunks), (expected, body))
