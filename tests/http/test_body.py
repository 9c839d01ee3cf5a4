"""
Tests for L{netproxy.http.body}: the decoders that cut a byte stream into
body pieces and the next message, however the stream is split, and the
chunked encoding.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import HTTPError
from netproxy.http.body import (
    LAST_CHUNK,
    ChunkedDecoder,
    CloseDecoder,
    LengthDecoder,
    NoBody,
    encode_chunk,
    make_decoder,
)
from netproxy.http.framing import Framing


def split_at(data, cuts):
    """
    Split C{data} at the given offsets.

    :returns: the list of pieces, some possibly empty.
    """
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def one_byte_pieces(data):
    """
    :returns: C{data} as a list of one-byte pieces.
    """
    return [data[i : i + 1] for i in range(len(data))]


def decode(decoder, feeds):
    """
    Feed every item of C{feeds} to C{decoder}.

    :returns: the concatenated body pieces.
    """
    pieces = []
    for data in feeds:
        pieces.extend(decoder.feed(data))
    for piece in pieces:
        assert isinstance(piece, bytes), piece
    return b"".join(pieces)


def chunked(*pieces, trailers=b""):
    """
    :returns: C{pieces} encoded as a chunked body ending with C{trailers}.
    """
    return b"".join(b"".join(encode_chunk(p)) for p in pieces) + (
        b"0\r\n" + trailers + b"\r\n"
    )


class MakeDecoderTests(SynchronousTestCase):
    """
    L{make_decoder} picks the decoder for a framing.
    """

    def test_kinds(self):
        """Each body kind gets its decoder, with the error status passed on."""
        length = make_decoder(Framing("length", 5), 502)
        self.assertIsInstance(length, LengthDecoder)
        self.assertEqual((length.remaining, length.error_status), (5, 502))
        chunked_decoder = make_decoder(Framing("chunked"), 502)
        self.assertIsInstance(chunked_decoder, ChunkedDecoder)
        self.assertEqual(chunked_decoder.error_status, 502)
        self.assertIsInstance(make_decoder(Framing("none")), NoBody)
        self.assertIsInstance(make_decoder(Framing("close", None, True)), CloseDecoder)

    def test_default_error_status(self):
        """The default error status is 400."""
        self.assertEqual(make_decoder(Framing("chunked")).error_status, 400)

    def test_tunnel(self):
        """A tunnel's bytes are not a body."""
        self.assertRaises(ValueError, make_decoder, Framing("tunnel", None, True))


class SimpleDecoderTests(SynchronousTestCase):
    """
    L{LengthDecoder}, L{NoBody} and L{CloseDecoder}.
    """

    def test_length_exact_with_rest(self):
        """The body ends after its length and the rest is kept."""
        decoder = LengthDecoder(5)
        self.assertEqual(decoder.feed(b"hel"), [b"hel"])
        self.assertFalse(decoder.done)
        self.assertEqual(decoder.feed(b"loGET / HTTP/1.1"), [b"lo"])
        self.assertTrue(decoder.done)
        self.assertEqual(decoder.rest, b"GET / HTTP/1.1")

    def test_length_split_every_way(self):
        """Byte by byte or in one piece, the body and rest are the same."""
        data = b"0123456789NEXT"
        for feeds in ([data], one_byte_pieces(data), split_at(data, [10])):
            decoder = LengthDecoder(10)
            self.assertEqual(decode(decoder, feeds), b"0123456789")
            self.assertEqual((decoder.done, decoder.rest), (True, b"NEXT"))

    def test_length_no_copy(self):
        """Data entirely inside the body is handed out as it is."""
        data = b"x" * 1000
        self.assertIs(LengthDecoder(5000).feed(data)[0], data)
        self.assertIs(LengthDecoder(1000).feed(data)[0], data)

    def test_length_zero(self):
        """A zero length is done at once and everything fed is rest."""
        decoder = LengthDecoder(0)
        self.assertTrue(decoder.done)
        self.assertEqual(decoder.feed(b"abc"), [])
        self.assertEqual(decoder.feed(b"def"), [])
        self.assertEqual(decoder.rest, b"abcdef")
        decoder.connection_lost()

    def test_length_connection_lost(self):
        """A short body raises the decoder's error status."""
        for status in (400, 502):
            decoder = LengthDecoder(10, status)
            decoder.feed(b"abc")
            error = self.assertRaises(HTTPError, decoder.connection_lost)
            self.assertEqual(error.status, status)
            self.assertIn("closed before the body ended", str(error))

    def test_length_connection_lost_when_done(self):
        """Closing after the whole body is not an error."""
        decoder = LengthDecoder(3)
        decoder.feed(b"abc")
        decoder.connection_lost()
        self.assertEqual(decoder.rest, b"")

    def test_no_body(self):
        """L{NoBody} is done at once and keeps everything as rest."""
        decoder = NoBody()
        self.assertTrue(decoder.done)
        self.assertEqual(decoder.feed(b"GET"), [])
        self.assertEqual(decoder.rest, b"GET")
        decoder.connection_lost()

    def test_close_decoder(self):
        """Everything is body until the connection closes, then it is done."""
        decoder = CloseDecoder()
        data = b"x" * 100
        self.assertIs(decoder.feed(data)[0], data)
        self.assertEqual(decoder.feed(b""), [])
        self.assertFalse(decoder.done)
        decoder.connection_lost()
        self.assertEqual((decoder.done, decoder.rest), (True, b""))


class ChunkedDecoderTests(SynchronousTestCase):
    """
    L{ChunkedDecoder} decodes valid chunked bodies however they are split.
    """

    def assert_decodes(self, data, body, rest=b"", trailers=()):
        """
        Assert that C{data} decodes to C{body}, C{rest} and C{trailers}
        whole, byte by byte, and split in two at every offset.
        """
        splits = [[data], one_byte_pieces(data)]
        splits += [split_at(data, [cut]) for cut in range(len(data) + 1)]
        for feeds in splits:
            decoder = ChunkedDecoder()
            self.assertEqual(decode(decoder, feeds), body)
            self.assertTrue(decoder.done)
            self.assertEqual(decoder.rest, rest)
            self.assertEqual(decoder.trailers, list(trailers))

    def test_simple(self):
        """Two chunks and the last chunk give the body and the rest."""
        self.assert_decodes(
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET /", b"hello world", b"GET /"
        )

    def test_empty_body(self):
        """The last chunk alone is an empty body."""
        self.assert_decodes(LAST_CHUNK, b"")

    def test_extensions(self):
        """Chunk extensions, with BWS around ';' and '=', are ignored."""
        self.assert_decodes(
            b'3;a\r\nabc\r\n2 ; b = c;d="x;\\"y"\r\nde\r\n0;last=1\r\n\r\n', b"abcde"
        )

    def test_uppercase_hex_and_leading_zeros(self):
        """Hex digits in either case, with leading zeros, give the size."""
        data = b"A\r\n" + b"a" * 10 + b"\r\n000a\r\n" + b"b" * 10 + b"\r\n"
        self.assert_decodes(data + b"00\r\n\r\n", b"a" * 10 + b"b" * 10)

    def test_fifteen_digit_size(self):
        """A 15-digit size line is accepted."""
        decoder = ChunkedDecoder()
        self.assertEqual(decoder.feed(b"fffffffffffffff\r\nab"), [b"ab"])
        self.assertFalse(decoder.done)

    def test_trailers(self):
        """Trailer fields are kept with OWS stripped, and the rest follows."""
        self.assert_decodes(
            chunked(b"hi", trailers=b"X-Sum: abc \r\nExpires:\r\nx-b:\t1 2\r\n")
            + b"NEXT",
            b"hi",
            b"NEXT",
            [(b"X-Sum", b"abc"), (b"Expires", b""), (b"x-b", b"1 2")],
        )

    def test_thirty_two_trailers(self):
        """Exactly 32 trailer fields are accepted."""
        trailers = b"".join(b"t%d: v\r\n" % i for i in range(32))
        decoder = ChunkedDecoder()
        decoder.feed(chunked(b"", trailers=trailers))
        self.assertEqual(len(decoder.trailers), 32)

    def test_feed_after_done(self):
        """Data fed after the end adds to the rest."""
        decoder = ChunkedDecoder()
        self.assertEqual(decoder.feed(LAST_CHUNK + b"ab"), [])
        self.assertEqual(decoder.feed(b"cd"), [])
        self.assertEqual(decoder.rest, b"abcd")

    def test_large_body_linear(self):
        """
        1 MiB of 16 KiB chunks in 64 KiB feeds gives at most one piece per
        chunk and feed, totalling the input.
        """
        payload = bytes(range(256)) * 4096
        data = chunked(*(payload[i : i + 16384] for i in range(0, len(payload), 16384)))
        feeds = [data[i : i + 65536] for i in range(0, len(data), 65536)]
        decoder = ChunkedDecoder()
        pieces = []
        for feed in feeds:
            pieces.extend(decoder.feed(feed))
        self.assertTrue(decoder.done)
        self.assertEqual(b"".join(pieces), payload)
        self.assertLessEqual(len(pieces), 64 + len(feeds))

    def test_feeds_inside_a_chunk_are_not_copied(self):
        """A feed entirely inside one chunk's data is handed out as it is."""
        decoder = ChunkedDecoder()
        decoder.feed(b"100000\r\n")
        feeds = [bytes([i]) * 65536 for i in range(16)]
        for feed in feeds:
            self.assertIs(decoder.feed(feed)[0], feed)
        decoder.feed(b"\r\n0\r\n\r\n")
        self.assertTrue(decoder.done)

    def test_connection_lost(self):
        """Closing anywhere before the end raises the decoder's error status."""
        data = chunked(b"hello", trailers=b"a: b\r\n")
        for cut in range(len(data)):
            decoder = ChunkedDecoder(502)
            decoder.feed(data[:cut])
            error = self.assertRaises(HTTPError, decoder.connection_lost)
            self.assertEqual(error.status, 502)
            self.assertIn("closed before the body ended", str(error))
        decoder = ChunkedDecoder()
        decoder.feed(data)
        decoder.connection_lost()


class MalformedChunkedTests(SynchronousTestCase):
    """
    L{ChunkedDecoder} refuses bad framing whole and byte by byte.
    """

    def assert_refused(self, data, message, status=400):
        """
        Assert that C{data} raises C{message} fed whole and byte by byte,
        and that no error comes before the data is bad.
        """
        for feeds in ([data], one_byte_pieces(data)):
            decoder = ChunkedDecoder(status)
            error = self.assertRaises(HTTPError, decode, decoder, feeds)
            self.assertEqual((error.status, str(error)), (status, message))

    def test_bad_sizes(self):
        """Signs, prefixes, spaces and non-hex are not chunk sizes."""
        for line in (
            b"-1",
            b"+1",
            b"0x10",
            b" 10",
            b"\t10",
            b"10 ",
            b"1 0",
            b"",
            b"g",
            b"1_0",
            b"5\r",
            b";a",
        ):
            self.assert_refused(line + b"\r\n", "invalid chunk size")

    def test_space_before_extension_only(self):
        """
        BWS is allowed before ';' (RFC 9112 7.1.1), so "10 ;a" is a size
        while "10 " alone is not: a size needs nothing stripped to be read.
        """
        decoder = ChunkedDecoder()
        self.assertEqual(decoder.feed(b"3 \t;a\r\nabc"), [b"abc"])
        self.assert_refused(b"3 \r\nabc\r\n", "invalid chunk size")

    def test_bad_extensions(self):
        """Extensions must follow the grammar."""
        for ext in (b";", b";=x", b";a=", b';a="x', b";a=b c", b";a b", b";a=\x01"):
            self.assert_refused(b"1" + ext + b"\r\n", "invalid chunk size")

    def test_size_too_many_digits(self):
        """More than 15 hex digits are refused, leading zeros included."""
        for line in (b"1" + b"0" * 15, b"0" * 15 + b"1", b"f" * 40 + b";a=b"):
            self.assert_refused(line + b"\r\n", "chunk size too large")

    def test_size_line_too_long(self):
        """A size line over 4 KiB is refused before its end arrives."""
        line = b"1;a=" + b"b" * 4090 + b"\r\n"
        self.assertEqual(len(line), 4096)
        for feeds in ([line + b"x"], one_byte_pieces(line + b"x")):
            self.assertEqual(decode(ChunkedDecoder(), feeds), b"x")
        self.assert_refused(b"1;a=b" + line[4:], "chunk size line too long")
        self.assert_refused(b"1" * 5000, "chunk size line too long")

    def test_bare_lf_size_line(self):
        """A size line ended by a bare LF is refused."""
        self.assert_refused(b"5\nhello\r\n0\r\n\r\n", "chunked line not ended by CRLF")
        self.assert_refused(b"5\r\nhello\r\n0\n\r\n", "chunked line not ended by CRLF")
        self.assert_refused(b"\n", "chunked line not ended by CRLF")

    def test_bad_chunk_terminator(self):
        """Chunk data must be followed by exactly CRLF."""
        for after in (b"XX", b"\n", b"\rX", b"\r\r", b" \r\n", b"x\r\n"):
            self.assert_refused(b"5\r\nhello" + after, "bad chunk terminator")

    def test_too_many_trailers(self):
        """A 33rd trailer field is refused."""
        trailers = b"".join(b"t%d: v\r\n" % i for i in range(33))
        self.assert_refused(chunked(b"a", trailers=trailers), "too many trailer fields")

    def test_trailer_section_too_long(self):
        """A trailer section over 8 KiB is refused."""
        trailers = b"a: " + b"b" * 8200 + b"\r\n"
        self.assert_refused(
            chunked(b"a", trailers=trailers), "trailer section too long"
        )

    def test_bad_trailers(self):
        """Trailer lines must be well-formed field lines ended by CRLF."""
        for trailer in (
            b"no colon\r\n",
            b"a : b\r\n",
            b"a: b\r\n folded\r\n",
            b": b\r\n",
            b"a: b\x00\r\n",
            b"a: b\rc\r\n",
        ):
            self.assert_refused(
                chunked(b"a", trailers=trailer), "invalid trailer field"
            )
        self.assert_refused(
            chunked(b"a", trailers=b"a: b\n"), "chunked line not ended by CRLF"
        )


class EncodeChunkTests(SynchronousTestCase):
    """
    L{encode_chunk} frames pieces that L{ChunkedDecoder} reads back.
    """

    def test_encode(self):
        """A piece becomes size line, data and CRLF."""
        self.assertEqual(encode_chunk(b"x" * 26), [b"1a\r\n", b"x" * 26, b"\r\n"])

    def test_empty_piece(self):
        """An empty piece gives nothing, as it would read as the last chunk."""
        self.assertEqual(encode_chunk(b""), [])

    def test_piece_stays_bytes(self):
        """A piece as a decoder hands it out is framed as bytes, as transports need."""
        [piece] = LengthDecoder(3).feed(b"abcdef")
        self.assertEqual(encode_chunk(piece)[1:2], [b"abc"])
        self.assertIsInstance(encode_chunk(piece)[1], bytes)

    def test_round_trip(self):
        """Encoded pieces and the last chunk decode to the pieces joined."""
        pieces = [b"a", b"", b"b" * 300, bytes(range(256))]
        data = b"".join(b"".join(encode_chunk(p)) for p in pieces) + LAST_CHUNK
        decoder = ChunkedDecoder()
        self.assertEqual(decode(decoder, [data]), b"".join(pieces))
        self.assertTrue(decoder.done)


_tokens = st.text("abcXYZ09-!#", min_size=1, max_size=5).map(str.encode)
_qdtext = [
    bytes([c])
    for c in range(256)
    if c in b"\t !" or 0x23 <= c <= 0x5B or 0x5D <= c <= 0x7E or c >= 0x80
]
_quoted_pairs = [b"\\" + bytes([c]) for c in b'\t "\\;\x80']
_quoted = st.lists(st.sampled_from(_qdtext + _quoted_pairs), max_size=6).map(
    lambda parts: b'"' + b"".join(parts) + b'"'
)
_extension = st.tuples(
    st.sampled_from([b"", b" ", b"\t "]),
    _tokens,
    st.one_of(st.just(b""), _tokens.map(b"=".__add__), _quoted.map(b" = ".__add__)),
).map(lambda p: p[0] + b";" + p[1] + p[2])


@st.composite
def chunked_bodies(draw):
    """
    :returns: a chunked body with random size spellings and extensions,
        the payload it carries, its trailers and the bytes that follow it.
    """
    pieces = draw(st.lists(st.binary(min_size=1, max_size=40), max_size=6))
    parts = []
    for piece in pieces + [b""]:
        size = b"%x" % len(piece)
        if draw(st.booleans()):
            size = size.upper()
        size = b"0" * draw(st.integers(0, 3)) + size
        exts = b"".join(draw(st.lists(_extension, max_size=2)))
        parts.append(size + exts + b"\r\n" + piece + (b"\r\n" if piece else b""))
    trailers = draw(st.lists(st.tuples(_tokens, _tokens), max_size=3))
    parts += [b"%s: %s\r\n" % t for t in trailers]
    rest = draw(st.binary(max_size=20))
    return b"".join(parts) + b"\r\n" + rest, b"".join(pieces), trailers, rest


class ChunkedPropertyTests(SynchronousTestCase):
    """
    Random chunked bodies, split randomly, decode to what was encoded.
    """

    @settings(max_examples=150, deadline=None)
    @given(chunked_bodies(), st.lists(st.integers(0, 2000), max_size=12))
    def test_random_bodies(self, body, cuts):
        """Payload, trailers and rest come back whatever the splits."""
        data, payload, trailers, rest = body
        decoder = ChunkedDecoder()
        feeds = split_at(data, [c % (len(data) + 1) for c in cuts])
        self.assertEqual(decode(decoder, feeds), payload)
        self.assertTrue(decoder.done)
        self.assertEqual(decoder.rest, rest)
        self.assertEqual(decoder.trailers, trailers)
