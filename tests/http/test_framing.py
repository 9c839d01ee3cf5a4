"""
Tests for L{netproxy.http.framing}: how request and response bodies are
delimited, and every ambiguous or invalid framing refused.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import HTTPError
from netproxy.http.framing import Framing, request_framing, response_framing
from netproxy.http.head import parse_request_head

HTTP11 = (1, 1)
HTTP10 = (1, 0)


class RequestFramingTests(SynchronousTestCase):
    """
    L{request_framing} refuses every ambiguous or invalid request framing.
    """

    def assert_refused(self, headers, message, version=HTTP11):
        """
        Assert that C{headers} are refused with 400 and C{message}.
        """
        error = self.assertRaises(HTTPError, request_framing, version, headers)
        self.assertEqual((error.status, str(error), error.close), (400, message, True))

    def test_no_framing_headers(self):
        """A request with neither Transfer-Encoding nor Content-Length has no body."""
        self.assertEqual(
            request_framing(HTTP11, [(b"Host", b"a")]), Framing("none", None)
        )

    def test_content_length(self):
        """A valid Content-Length, in any case of name, gives a length."""
        for name in (b"Content-Length", b"content-length", b"CONTENT-LENGTH"):
            self.assertEqual(
                request_framing(HTTP11, [(name, b"42")]), Framing("length", 42)
            )

    def test_content_length_zero_and_leading_zeros(self):
        """Zero and leading zeros are valid 1*DIGIT lengths."""
        self.assertEqual(request_framing(HTTP11, [(b"Content-Length", b"0")]).length, 0)
        self.assertEqual(
            request_framing(HTTP11, [(b"Content-Length", b"007")]).length, 7
        )

    def test_content_length_surrounding_whitespace(self):
        """OWS around the value is not part of it."""
        self.assertEqual(
            request_framing(HTTP11, [(b"Content-Length", b" 5\t")]).length, 5
        )

    def test_invalid_content_length(self):
        """Anything but 1*DIGIT is an invalid Content-Length."""
        for value in (b"", b"+5", b"-5", b"4 2", b"0x10", b"1.0", b"5a", b"\xd9\xa1"):
            self.assert_refused([(b"Content-Length", value)], "invalid Content-Length")

    def test_content_length_too_many_digits(self):
        """More than 18 digits is refused; 18 are accepted."""
        self.assertEqual(
            request_framing(HTTP11, [(b"Content-Length", b"9" * 18)]).length,
            10**18 - 1,
        )
        self.assert_refused([(b"Content-Length", b"1" * 19)], "invalid Content-Length")

    def test_duplicate_content_length(self):
        """Two field lines or a list are refused, even with equal values."""
        for headers in (
            [(b"Content-Length", b"5"), (b"content-length", b"5")],
            [(b"Content-Length", b"5"), (b"Content-Length", b"6")],
            [(b"Content-Length", b"5, 5")],
            [(b"Content-Length", b"5,")],
        ):
            self.assert_refused(headers, "duplicate Content-Length")

    def test_transfer_encoding_chunked(self):
        """Transfer-Encoding: chunked, in any case and with OWS, is chunked."""
        for value in (b"chunked", b"Chunked", b"CHUNKED", b" chunked\t"):
            self.assertEqual(
                request_framing(HTTP11, [(b"transfer-encoding", value)]),
                Framing("chunked", None),
            )

    def test_transfer_encoding_empty_elements(self):
        """
        Empty list elements are ignored (RFC 9110 5.6.1), even on field lines
        of their own, as long as chunked is the only coding.
        """
        for headers in (
            [(b"Transfer-Encoding", b"chunked, ")],
            [(b"Transfer-Encoding", b", chunked")],
            [(b"Transfer-Encoding", b""), (b"Transfer-Encoding", b"chunked")],
        ):
            self.assertEqual(request_framing(HTTP11, headers).kind, "chunked")

    def test_chunked_not_last(self):
        """Codings that do not end with chunked, once, leave the body's end unknown: 400 (RFC 9112 6.3)."""
        for value in (
            b"chunked, gzip",
            b"identity",
            b"xchunked",
            b"chunked;x=1",
            b"chunked, chunked",
            b"gzip, chunked, chunked",
            b"",
            b" , ",
            b"\x0bchunked",
        ):
            self.assert_refused(
                [(b"Transfer-Encoding", value)], "the request's Transfer-Encoding does not end with chunked, once"
            )

    def test_unknown_transfer_coding(self):
        """A coding the proxy does not decode before a final chunked is 501, the client's fault (RFC 9112 6.1)."""
        for value in (b"gzip, chunked", b"x-custom, CHUNKED", b"deflate,gzip,chunked"):
            error = self.assertRaises(HTTPError, request_framing, HTTP11, [(b"Transfer-Encoding", value)])
            self.assertEqual((error.status, str(error), error.close, error.client_fault),
                             (501, "transfer codings other than chunked are not supported", True, True))

    def test_transfer_coding_over_two_field_lines(self):
        """Codings are gathered from every field line."""
        self.assert_refused([(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"chunked")],
                            "the request's Transfer-Encoding does not end with chunked, once")
        self.assert_refused([(b"Transfer-Encoding", b"chunked"), (b"Transfer-Encoding", b"gzip")],
                            "the request's Transfer-Encoding does not end with chunked, once")
        error = self.assertRaises(HTTPError, request_framing, HTTP11,
                                  [(b"Transfer-Encoding", b"gzip"), (b"Transfer-Encoding", b"chunked")])
        self.assertEqual(error.status, 501)

    def test_transfer_encoding_and_content_length(self):
        """Both framing headers are refused, in either order."""
        for headers in (
            [(b"Transfer-Encoding", b"chunked"), (b"Content-Length", b"5")],
            [(b"Content-Length", b"5"), (b"transfer-encoding", b"chunked")],
        ):
            self.assert_refused(headers, "both Transfer-Encoding and Content-Length")

    def test_transfer_encoding_in_http10(self):
        """Transfer-Encoding in an HTTP/1.0 request is refused."""
        # As the head parser hands it over, as well as spelled out.
        for version in (HTTP10, parse_request_head(b"POST / HTTP/1.0\r\n\r\n").version):
            self.assert_refused(
                [(b"Transfer-Encoding", b"chunked")],
                "Transfer-Encoding in an HTTP/1.0 request",
                version,
            )

    def test_version_from_head(self):
        """The version and fields come as the head parser hands them over."""
        head = parse_request_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertEqual(request_framing(head.version, head.headers).kind, "chunked")


class ResponseFramingTests(SynchronousTestCase):
    """
    L{response_framing} follows RFC 9112 section 6.3 for responses.
    """

    def framing(self, headers, status=200, method=b"GET", version=HTTP11):
        """
        :returns: the framing of a response with C{headers}.
        """
        return response_framing(method, status, version, headers)

    def assert_refused(self, headers, version=HTTP11):
        """
        Assert that a response with C{headers} is refused with 502.
        """
        error = self.assertRaises(HTTPError, self.framing, headers, version=version)
        self.assertEqual(error.status, 502)
        return str(error)

    def test_no_body_statuses(self):
        """HEAD, 1xx, 204 and 304 have no body whatever the headers say."""
        headers = [(b"Content-Length", b"10"), (b"Transfer-Encoding", b"chunked")]
        self.assertEqual(self.framing(headers, method=b"HEAD"), Framing("none"))
        for status in (100, 101, 103, 204, 304):
            self.assertEqual(self.framing(headers, status), Framing("none"))

    def test_connect_success_is_tunnel(self):
        """Any 2xx to CONNECT makes a tunnel, 204 included (RFC 9110 9.3.6)."""
        for status in (200, 204, 299):
            framing = self.framing([], status, b"CONNECT")
            self.assertEqual((framing.kind, framing.must_close), ("tunnel", True))

    def test_connect_failure_has_a_body(self):
        """A refused CONNECT's body is framed as usual."""
        framing = self.framing([(b"Content-Length", b"3")], 407, b"CONNECT")
        self.assertEqual(framing, Framing("length", 3))

    def test_chunked(self):
        """Chunked alone, in any case, gives a chunked body."""
        for value in (b"chunked", b"CHUNKED", b" chunked ,"):
            framing = self.framing([(b"Transfer-Encoding", value)])
            self.assertEqual(framing, Framing("chunked", None, False))

    def test_other_transfer_coding(self):
        """Any coding but chunked alone is 502 (RFC 9112 6.1): never relayed without it, nor read to the close."""
        for value in (b"gzip, chunked", b"gzip,CHUNKED", b"chunked, gzip", b"gzip", b"identity", b"chunked, chunked",
                      b""):
            message = self.assert_refused([(b"Transfer-Encoding", value)])
            self.assertEqual(message, "the upstream server used a transfer coding other than chunked")

    def test_transfer_encoding_overrides_content_length(self):
        """With both headers TE wins, and the connection is not reused."""
        headers = [(b"Content-Length", b"5"), (b"Transfer-Encoding", b"chunked")]
        self.assertEqual(self.framing(headers), Framing("chunked", None, True))

    def test_transfer_encoding_in_http10(self):
        """Transfer-Encoding in an HTTP/1.0 response is faulty framing."""
        message = self.assert_refused([(b"Transfer-Encoding", b"chunked")], HTTP10)
        self.assertEqual(message, "Transfer-Encoding in an HTTP/1.0 response")

    def test_content_length(self):
        """A valid Content-Length gives a length; the connection can be reused."""
        self.assertEqual(
            self.framing([(b"content-length", b"12")]), Framing("length", 12, False)
        )

    def test_equal_content_lengths(self):
        """Repeated equal values are accepted (RFC 9110 8.6)."""
        for headers in (
            [(b"Content-Length", b"42, 42")],
            [(b"Content-Length", b"42"), (b"Content-Length", b"42")],
        ):
            self.assertEqual(self.framing(headers), Framing("length", 42))

    def test_conflicting_content_lengths(self):
        """Different values are refused with 502."""
        for headers in (
            [(b"Content-Length", b"42, 43")],
            [(b"Content-Length", b"42"), (b"Content-Length", b"7")],
        ):
            self.assertIn("conflicting", self.assert_refused(headers))

    def test_invalid_content_length(self):
        """An invalid or absurdly long value is refused with 502."""
        for value in (b"-1", b"abc", b"", b"1" * 19, b"42,", b"4 2"):
            message = self.assert_refused([(b"Content-Length", value)])
            self.assertIn("invalid Content-Length", message)

    def test_no_framing_reads_until_close(self):
        """Without TE or CL the body ends when the connection closes."""
        for version in (HTTP11, HTTP10):
            self.assertEqual(
                self.framing([], version=version), Framing("close", None, True)
            )
