"""
Tests for L{netproxy.message.codec}: splitting a byte stream into JSON objects
however it is chunked, the size limit, the error reasons sent to peers, and
the encoding of replies.
"""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import FramingError
from netproxy.message.codec import DEFAULT_MAX_SIZE, MessageDecoder, encode_message, wire_form


def decode_chunks(chunks, max_size=DEFAULT_MAX_SIZE):
    """
    Feed C{chunks} to a new decoder and collect every message.

    :returns: the list of messages.
    :raises FramingError: as the decoder does.
    """
    decoder = MessageDecoder(max_size)
    messages = []
    for chunk in chunks:
        messages.extend(decoder.feed(chunk))
    return messages


def decode_until_error(chunks, max_size=DEFAULT_MAX_SIZE):
    """
    Feed C{chunks} to a new decoder, stopping at the first error.

    :returns: the messages yielded and the error's reason, or L{None}.
    """
    decoder = MessageDecoder(max_size)
    messages = []
    try:
        for chunk in chunks:
            for message in decoder.feed(chunk):
                messages.append(message)
    except FramingError as e:
        return messages, str(e)
    return messages, None


def split_at(data, cuts):
    """
    Split C{data} at the given offsets.

    :returns: the list of chunks, some possibly empty.
    """
    bounds = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:])]


def one_byte_chunks(data):
    """
    :returns: C{data} as a list of one-byte chunks.
    """
    return [data[i : i + 1] for i in range(len(data))]


class ObjectBoundaryTests(SynchronousTestCase):
    """
    A message ends at its matching closing brace, whatever the chunking.
    """

    def test_single_object_without_newline(self):
        """A lone object with no trailing newline is yielded at its brace."""
        decoder = MessageDecoder()
        self.assertEqual(list(decoder.feed(b'{"op": "ping"}')), [{"op": "ping"}])
        self.assertEqual(decoder.buffered, 0)

    def test_several_objects_in_one_chunk(self):
        """Back-to-back objects in one chunk are all yielded, in order."""
        self.assertEqual(
            decode_chunks([b'{"a": 1}{"b": 2}{}']), [{"a": 1}, {"b": 2}, {}]
        )

    def test_whitespace_between_objects(self):
        """Spaces, tabs, CR and LF around objects are skipped."""
        self.assertEqual(
            decode_chunks([b' \r\n\t{"a": 1}\n\n {"b": 2}\r\n  ']),
            [{"a": 1}, {"b": 2}],
        )

    def test_whitespace_is_not_buffered(self):
        """Whitespace between messages does not count as buffered data."""
        decoder = MessageDecoder()
        self.assertEqual(list(decoder.feed(b'{"a": 1}\n  \t\r\n')), [{"a": 1}])
        self.assertEqual(decoder.buffered, 0)

    def test_incomplete_object_is_held(self):
        """An unfinished object yields nothing and is counted as buffered."""
        decoder = MessageDecoder()
        self.assertEqual(list(decoder.feed(b'  {"a": ')), [])
        self.assertEqual(decoder.buffered, 6)
        self.assertEqual(list(decoder.feed(b"1}")), [{"a": 1}])
        self.assertEqual(decoder.buffered, 0)

    def test_one_byte_at_a_time(self):
        """Objects fed one byte per chunk come out whole and in order."""
        stream = b'{"a": {"b": [1, "}"]}, "c": "\\"{"}\n{"d": null}'
        self.assertEqual(
            decode_chunks(one_byte_chunks(stream)),
            [{"a": {"b": [1, "}"]}, "c": '"{'}, {"d": None}],
        )

    def test_nested_objects(self):
        """Inner closing braces do not end the message."""
        stream = b'{"a": {"b": {"c": {}}}, "d": [{"e": {}}]}'
        self.assertEqual(
            decode_chunks([stream]), [{"a": {"b": {"c": {}}}, "d": [{"e": {}}]}]
        )

    def test_braces_inside_strings(self):
        """Braces inside strings, keys included, are not structure."""
        stream = b'{"}": "{{{", "x": "}}}}"}{"y": "{"}'
        self.assertEqual(
            decode_chunks([stream]), [{"}": "{{{", "x": "}}}}"}, {"y": "{"}]
        )

    def test_escaped_quote_inside_string(self):
        """An escaped quote does not end the string it is in."""
        stream = b'{"a": "x\\"}y"}'
        self.assertEqual(decode_chunks([stream]), [{"a": 'x"}y'}])

    def test_escaped_backslash_before_quote(self):
        """A quote after an escaped backslash does end the string."""
        stream = b'{"a": "\\\\"}{"b": "\\\\\\\\"}'
        self.assertEqual(decode_chunks([stream]), [{"a": "\\"}, {"b": "\\\\"}])

    def test_split_at_every_offset(self):
        """Splitting a tricky stream in two anywhere gives the same objects."""
        stream = b'{"a": "x\\"}y", "b": "\\\\", "c": {"d": "{"}} {"e": "\\u00e9"}'
        expected = [{"a": 'x"}y', "b": "\\", "c": {"d": "{"}}, {"e": "\u00e9"}]
        for cut in range(len(stream) + 1):
            self.assertEqual(decode_chunks(split_at(stream, [cut])), expected)

    def test_backslash_ends_chunk(self):
        """A backslash as the last byte of a chunk escapes the next chunk's first."""
        self.assertEqual(
            decode_chunks([b'{"a": "x\\', b'"}"}']), [{"a": 'x"}'}]
        )

    def test_utf8_split_across_chunks(self):
        """Multi-byte UTF-8 characters survive a split at every byte offset."""
        text = "caf\u00e9 \U0001f600 \u20ac"
        stream = encode_message({"s": text, text: "{"})
        for cut in range(len(stream) + 1):
            self.assertEqual(
                decode_chunks(split_at(stream, [cut])), [{"s": text, text: "{"}]
            )

    def test_utf8_one_byte_at_a_time(self):
        """A message full of multi-byte characters decodes byte by byte."""
        text = "\u00e9\U0001f600\u4e2d" * 10
        stream = encode_message({"s": text})
        self.assertEqual(decode_chunks(one_byte_chunks(stream)), [{"s": text}])

    def test_large_object_one_byte_at_a_time(self):
        """A 60 KiB object fed one byte per chunk decodes correctly."""
        message = {"k%d" % i: "v\\\"{}" * 3 for i in range(1850)}
        stream = json.dumps(message).encode("ascii")
        self.assertGreater(len(stream), 60 * 1024)
        self.assertLess(len(stream), DEFAULT_MAX_SIZE)
        self.assertEqual(decode_chunks(one_byte_chunks(stream)), [message])

    def test_empty_chunks(self):
        """Empty chunks are harmless anywhere in the stream."""
        self.assertEqual(
            decode_chunks([b"", b'{"a"', b"", b": 1}", b""]), [{"a": 1}]
        )


class SizeLimitTests(SynchronousTestCase):
    """
    A message may not be larger than the decoder's limit.
    """

    def padded(self, size):
        """
        :returns: an object of exactly C{size} bytes.
        """
        message = b'{"p": ""}'
        return message[:-2] + b"x" * (size - len(message)) + message[-2:]

    def test_exactly_at_limit(self):
        """An object exactly max_size bytes long is accepted."""
        message = self.padded(100)
        self.assertEqual(len(message), 100)
        self.assertEqual(decode_chunks([message], max_size=100), [json.loads(message)])

    def test_exactly_at_limit_byte_by_byte(self):
        """The limit holds the same way when the object arrives byte by byte."""
        message = self.padded(100)
        self.assertEqual(
            decode_chunks(one_byte_chunks(message), max_size=100),
            [json.loads(message)],
        )

    def test_one_over_limit(self):
        """An object one byte over max_size is refused, naming the limit."""
        error = self.assertRaises(
            FramingError, decode_chunks, [self.padded(101)], max_size=100
        )
        self.assertEqual(str(error), "message larger than 100 bytes")

    def test_one_over_limit_byte_by_byte(self):
        """The byte that passes the limit is refused when it arrives."""
        message = self.padded(101)
        decoder = MessageDecoder(100)
        for byte in one_byte_chunks(message[:100]):
            self.assertEqual(list(decoder.feed(byte)), [])
        self.assertEqual(decoder.buffered, 100)
        self.assertRaises(FramingError, list, decoder.feed(message[100:]))

    def test_default_limit(self):
        """The default limit is 64 KiB and the reason says so."""
        self.assertEqual(DEFAULT_MAX_SIZE, 65536)
        self.assertEqual(
            decode_chunks([self.padded(65536)]), [json.loads(self.padded(65536))]
        )
        error = self.assertRaises(
            FramingError, decode_chunks, [self.padded(65537)]
        )
        self.assertEqual(str(error), "message larger than 65536 bytes")

    def test_leading_whitespace_not_counted(self):
        """Whitespace before an object does not count towards its size."""
        self.assertEqual(
            decode_chunks([b" " * 500 + self.padded(100)], max_size=100),
            [json.loads(self.padded(100))],
        )

    def test_limit_applies_per_message(self):
        """Several messages in one chunk may together exceed the limit."""
        stream = self.padded(100) * 5
        self.assertEqual(len(decode_chunks([stream], max_size=100)), 5)

    def test_huge_object_fails_early(self):
        """A 1 MiB object is refused before more than the limit is held."""
        message = self.padded(1024 * 1024)
        chunk_size = 4096
        decoder = MessageDecoder()
        fed = 0
        with self.assertRaises(FramingError):
            for offset in range(0, len(message), chunk_size):
                fed += chunk_size
                list(decoder.feed(message[offset : offset + chunk_size]))
                self.assertLessEqual(decoder.buffered, DEFAULT_MAX_SIZE)
        self.assertLessEqual(fed, DEFAULT_MAX_SIZE + chunk_size)
        self.assertEqual(decoder.buffered, 0)

    def test_huge_chunk_not_buffered(self):
        """A single 1 MiB chunk holding an oversized object is not kept."""
        decoder = MessageDecoder()
        self.assertRaises(
            FramingError, list, decoder.feed(self.padded(1024 * 1024))
        )
        self.assertEqual(decoder.buffered, 0)

    def test_unterminated_string_hits_limit(self):
        """A string that never closes is refused at the limit."""
        error = self.assertRaises(
            FramingError, decode_chunks, [b'{"a": "', b"}" * 200], max_size=100
        )
        self.assertEqual(str(error), "message larger than 100 bytes")


class BadInputTests(SynchronousTestCase):
    """
    A stream that is not a sequence of JSON objects is refused with a reason
    fit to send back to the peer.
    """

    def assert_reason(self, stream, reason):
        """
        Assert that decoding C{stream} fails with exactly C{reason}.
        """
        error = self.assertRaises(FramingError, decode_chunks, [stream])
        self.assertEqual(str(error), reason)

    def test_non_object_values(self):
        """JSON values other than objects are refused at their first byte."""
        for stream, got in [
            (b"[1]", "'['"),
            (b'"x"', "'\"'"),
            (b"123", "'1'"),
            (b"-1", "'-'"),
            (b"null", "'n'"),
            (b"true", "'t'"),
            (b"garbage", "'g'"),
            (b"  \n[{}]", "'['"),
        ]:
            self.assert_reason(stream, f"expected a JSON object, got {got}")

    def test_stray_closing_brace(self):
        """A closing brace outside any object is refused."""
        self.assert_reason(b'{"a": 1}}', "expected a JSON object, got '}'")

    def test_unprintable_byte(self):
        """A control or non-ASCII byte between messages is named by its value."""
        self.assert_reason(b"\x00", "expected a JSON object, got byte 0x00")
        self.assert_reason(b"\xef\xbb\xbf{}", "expected a JSON object, got byte 0xef")

    def test_malformed_objects(self):
        """Brace-balanced objects that are not valid JSON are refused."""
        for stream in [
            b"{abc}",
            b'{"a":}',
            b'{"a": 1,}',
            b'{"a": [1, 2,]}',
            b"{'a': 1}",
            b'{"a" 1}',
            b'{"a": 1 "b": 2}',
            b'{"a": "\\x"}',
            b'{"a": "tab\there"}',
            b'{"a": [}',
        ]:
            error = self.assertRaises(FramingError, decode_chunks, [stream])
            self.assertTrue(
                str(error).startswith("malformed JSON: "), (stream, str(error))
            )

    def test_malformed_reason_gives_position(self):
        """The reason quotes the JSON parser's complaint and where it was."""
        self.assert_reason(b'{"a":}', "malformed JSON: Expecting value at column 6")
        self.assert_reason(
            b'{\n"a":\n}', "malformed JSON: Expecting value at line 3 column 1"
        )

    def test_non_finite_numbers(self):
        """NaN, infinities and overflowing floats are refused."""
        self.assert_reason(b'{"a": NaN}', "malformed JSON: NaN is not allowed")
        self.assert_reason(
            b'{"a": Infinity}', "malformed JSON: Infinity is not allowed"
        )
        self.assert_reason(
            b'{"a": -Infinity}', "malformed JSON: -Infinity is not allowed"
        )
        self.assert_reason(b'{"a": 1e999}', "malformed JSON: number out of range")

    def test_huge_integer(self):
        """An integer too long for Python to convert is refused politely."""
        self.assert_reason(
            b'{"a": ' + b"1" * 5000 + b"}", "malformed JSON: number too long"
        )

    def test_deep_nesting(self):
        """Nesting too deep for the JSON parser is refused, not a crash."""
        self.assert_reason(
            b'{"a": ' + b"[" * 30000 + b"]" * 30000 + b"}",
            "message nested too deeply",
        )

    def test_invalid_utf8(self):
        """A complete object that is not UTF-8 is refused."""
        for stream in [
            b'{"a": "\xff"}',
            b'{"a": "\xc3"}',
            b'{"\xe9": 1}',
            b'{"a": "\xed\xa0\x80"}',
        ]:
            self.assert_reason(stream, "message is not valid UTF-8")

    def test_error_is_sticky(self):
        """After an error every later feed raises the same error."""
        decoder = MessageDecoder()
        self.assertRaises(FramingError, list, decoder.feed(b"[1]"))
        for _ in range(2):
            error = self.assertRaises(FramingError, list, decoder.feed(b"{}"))
            self.assertEqual(str(error), "expected a JSON object, got '['")

    def test_objects_before_error_are_yielded(self):
        """Messages before the fault in the same chunk are yielded first."""
        messages, reason = decode_until_error([b'{"a": 1} {"b": 2}\n[3] {"c": 4}'])
        self.assertEqual(messages, [{"a": 1}, {"b": 2}])
        self.assertEqual(reason, "expected a JSON object, got '['")

    def test_malformed_after_good_in_same_chunk(self):
        """A malformed object is refused after the good ones before it."""
        messages, reason = decode_until_error([b'{"a": 1}{"b":}{"c": 3}'])
        self.assertEqual(messages, [{"a": 1}])
        self.assertEqual(reason, "malformed JSON: Expecting value at column 6")


class EncodeMessageTests(SynchronousTestCase):
    """
    L{encode_message} writes what L{MessageDecoder} reads.
    """

    def test_ends_with_newline(self):
        """The encoding is one line of JSON followed by a newline."""
        encoded = encode_message({"op": "ping", "n": [1, 2]})
        self.assertTrue(encoded.endswith(b"\n"))
        self.assertNotIn(b"\n", encoded[:-1])
        self.assertEqual(json.loads(encoded), {"op": "ping", "n": [1, 2]})

    def test_utf8_not_escaped(self):
        """Non-ASCII text is written as UTF-8, not as escapes."""
        self.assertEqual(
            encode_message({"s": "\u00e9\U0001f600"}),
            '{"s": "\u00e9\U0001f600"}\n'.encode("utf-8"),
        )

    def test_round_trip(self):
        """Encoded messages decode to equal messages."""
        message = {"a": "{\"}\\", "b": {"c": [None, True, 1.5, -2]}, "\u00e9": ""}
        self.assertEqual(decode_chunks([encode_message(message)]), [message])

    def test_lone_surrogate_round_trip(self):
        """A lone surrogate a peer sent as an escape can be sent back."""
        [message] = decode_chunks([b'{"s": "\\ud800"}'])
        encoded = encode_message(message)
        encoded.decode("utf-8")
        self.assertEqual(decode_chunks([encoded]), [message])

    def test_refuses_non_finite(self):
        """NaN cannot be encoded, since the decoder would refuse it."""
        self.assertRaises(ValueError, encode_message, {"a": float("nan")})

    def test_refuses_non_dict(self):
        """Only a dict is a message."""
        self.assertRaises(TypeError, encode_message, [1, 2])


# Text that stresses the scanner: structural characters, escapes, control
# characters and multi-byte UTF-8, mixed with anything else.
tricky_text = st.text(
    alphabet=st.sampled_from('{}"\\[]:, \n\t\u00e9\U0001f600')
    | st.characters(codec="utf-8"),
    max_size=8,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | tricky_text,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(tricky_text, children, max_size=4),
    max_leaves=8,
)
json_objects = st.dictionaries(tricky_text, json_values, max_size=5)
whitespace = st.text(alphabet=" \t\r\n", max_size=3)


@st.composite
def serialised_streams(draw):
    """
    :returns: a list of objects and a chunking of their serialisation, with
        random whitespace and formatting.
    """
    messages = draw(st.lists(json_objects, max_size=4))
    parts = [draw(whitespace).encode("ascii")]
    for message in messages:
        text = json.dumps(
            message,
            ensure_ascii=draw(st.booleans()),
            indent=draw(st.none() | st.integers(0, 2)),
        )
        parts.append(text.encode("utf-8"))
        parts.append(draw(whitespace).encode("ascii"))
    stream = b"".join(parts)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=10))
    return messages, split_at(stream, cuts)


# Fragments from which random streams, well-formed or not, are built.
fragments = st.lists(
    st.sampled_from(
        [b"{", b"}", b'"', b"\\", b" ", b"\n", b"a", b":", b",", b"1", b"[", b"]",
         b"\xc3", b"\xa9", b'{"a": 1}', b'"}"', b'"\\""']
    ),
    max_size=40,
)


class PropertyTests(SynchronousTestCase):
    """
    Properties that hold for every stream and every chunking of it.
    """

    @settings(max_examples=200, deadline=None)
    @given(serialised_streams())
    def test_yields_original_objects(self, case):
        """Serialised objects, chunked anyhow, decode to the originals."""
        messages, chunks = case
        self.assertEqual(decode_chunks(chunks), messages)

    @settings(max_examples=200, deadline=None)
    @given(fragments, st.lists(st.integers(0, 400), max_size=10))
    def test_chunking_does_not_matter(self, parts, cuts):
        """Any stream gives the same messages and error however it is split."""
        stream = b"".join(parts)
        cuts = [cut % (len(stream) + 1) for cut in cuts]
        self.assertEqual(
            decode_until_error(split_at(stream, cuts), max_size=20),
            decode_until_error([stream], max_size=20),
        )

    @settings(max_examples=200, deadline=None)
    @given(fragments, st.lists(st.integers(0, 400), max_size=10))
    def test_buffer_stays_bounded(self, parts, cuts):
        """The decoder never holds more than its limit."""
        stream = b"".join(parts)
        cuts = [cut % (len(stream) + 1) for cut in cuts]
        decoder = MessageDecoder(20)
        try:
            for chunk in split_at(stream, cuts):
                list(decoder.feed(chunk))
                self.assertLessEqual(decoder.buffered, 20)
        except FramingError:
            self.assertEqual(decoder.buffered, 0)


class LastRawTests(SynchronousTestCase):
    def test_last_raw_is_exact_bytes(self):
        """last_raw holds each yielded message's bytes exactly as received, across chunks."""
        decoder = MessageDecoder()
        stream = b' {"a" : 1,  "b":"x"}\n{"c":[ 2 ]}'
        seen = []
        for i in range(len(stream)):
            for message in decoder.feed(stream[i:i + 1]):
                seen.append((message, decoder.last_raw))
        self.assertEqual(seen, [({"a": 1, "b": "x"}, b'{"a" : 1,  "b":"x"}'), ({"c": [2]}, b'{"c":[ 2 ]}')])


class WholeChunkTests(SynchronousTestCase):
    """
    A chunk holding one whole message (the usual case) is parsed at once;
    anything else in a chunk is read as the scanner reads it.
    """

    def feed_each(self, chunk, max_size=DEFAULT_MAX_SIZE):
        """
        :returns: C{(messages, last_raw)} from one chunk, or the
            L{FramingError}'s text in place of the messages.
        """
        decoder = MessageDecoder(max_size)
        try:
            return list(decoder.feed(chunk)), decoder.last_raw
        except FramingError as error:
            return str(error), decoder.last_raw

    def test_whole_message(self):
        """One message with whitespace around it: the message, and its bytes from brace to brace."""
        self.assertEqual(self.feed_each(b' \t{"a": "}", "b": {"c": 1}}\r\n'),
                         ([{"a": "}", "b": {"c": 1}}], b'{"a": "}", "b": {"c": 1}}'))

    def test_two_messages(self):
        """Two messages in one chunk are both yielded, the last one's bytes kept."""
        self.assertEqual(self.feed_each(b'{"a": 1} {"b": 2}\n'), ([{"a": 1}, {"b": 2}], b'{"b": 2}'))

    def test_message_and_a_half(self):
        """A message and the start of the next: the first is yielded, the rest held."""
        decoder = MessageDecoder()
        self.assertEqual(list(decoder.feed(b'{"a": 1}{"b": "}')), [{"a": 1}])
        self.assertEqual(decoder.buffered, len(b'{"b": "}'))
        self.assertEqual(list(decoder.feed(b'"}')), [{"b": "}"}])

    def test_same_errors(self):
        """Malformed, oversized and deeply nested chunks fail as the scanner reports them."""
        self.assertEqual(self.feed_each(b'{"a": 1,}')[0], "malformed JSON: Expecting property name enclosed in "
                                                          "double quotes at column 9")
        self.assertEqual(self.feed_each(b'{"a": "' + b"x" * 30 + b'"}', max_size=20)[0],
                         "message larger than 20 bytes")
        self.assertEqual(self.feed_each(b'{"a": ' + b"[" * 30000 + b"]" * 30000 + b"}", max_size=1 << 20)[0],
                         "message nested too deeply")
        self.assertEqual(self.feed_each(b'{"a": "\xff"}')[0], "message is not valid UTF-8")
        self.assertEqual(self.feed_each(b"{} }")[0], "expected a JSON object, got '}'")

    def test_good_then_bad(self):
        """A good message followed by a bad one in the same chunk: the good one first, then the error."""
        decoder = MessageDecoder()
        feed = decoder.feed(b'{"a": 1} {"b": nope}')
        self.assertEqual(next(feed), {"a": 1})
        self.assertRaises(FramingError, next, feed)

    def test_exactly_at_limit(self):
        """A whole chunk exactly at the size limit is a message; a byte more is refused."""
        message = b'{"a": "' + b"x" * 13 + b'"}'
        self.assertEqual(self.feed_each(message, max_size=len(message))[0], [{"a": "x" * 13}])
        self.assertEqual(self.feed_each(message, max_size=len(message) - 1)[0],
                         f"message larger than {len(message) - 1} bytes")

    def test_after_a_partial_message(self):
        """A chunk that ends a message begun earlier is never taken for a whole one."""
        decoder = MessageDecoder()
        self.assertEqual(list(decoder.feed(b'{"a": ')), [])
        self.assertEqual(list(decoder.feed(b'{"b": 1}}')), [{"a": {"b": 1}}])
        self.assertEqual(decoder.last_raw, b'{"a": {"b": 1}}')


class WireFormTests(SynchronousTestCase):
    """
    L{wire_form} passes a message on as it came when it is one line.
    """

    def test_raw_one_line(self):
        """Bytes on one line go on as they came, with a newline: spacing, escapes and key order kept."""
        raw = b'{"payload":"\\u00e9t\xc3\xa9",  "type" :0}'
        self.assertEqual(wire_form(json.loads(raw), raw), raw + b"\n")

    def test_raw_on_several_lines(self):
        """A message written over several lines is encoded on one, for servers that read lines."""
        raw = b'{"type": 0,\n "payload": "x"}'
        self.assertEqual(wire_form(json.loads(raw), raw), encode_message({"type": 0, "payload": "x"}))
        raw = b'{"type": 0,\r "payload": "x"}'
        self.assertEqual(wire_form(json.loads(raw), raw), encode_message({"type": 0, "payload": "x"}))

    def test_no_raw(self):
        """Without the bytes, the message is encoded."""
        self.assertEqual(wire_form({"a": 1}), encode_message({"a": 1}))
