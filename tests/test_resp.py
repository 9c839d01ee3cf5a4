"""
Tests for L{netproxy.resp}: RESP2 commands out, replies in, a byte at a time,
and the bounds on what a reply may make the decoder hold.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from netproxy.resp import MAX_LINE, RedisError, RespDecoder, RespError, encode_command, reply_number, reply_text


def one_byte_at_a_time(decoder, data):
    replies = []
    for index in range(len(data)):
        replies += decoder.feed(data[index:index + 1])
    return replies


def encode_reply(value):
    """
    :returns: C{value} as Redis would send it (bytes as bulk strings, lists as arrays).
    """
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%s\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(encode_reply(item) for item in value)


replies = st.recursive(st.none() | st.integers(-2 ** 63, 2 ** 63 - 1) | st.binary(max_size=20),
                       lambda children: st.lists(children, max_size=4), max_leaves=20)


class EncodeTests(SynchronousTestCase):
    def test_array_of_bulk_strings(self):
        """A command is an array of bulk strings: text as UTF-8, numbers as decimal text."""
        self.assertEqual(encode_command(["SET", b"k\r\n", 12, "é"]),
                         b"*4\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$2\r\n12\r\n$2\r\n\xc3\xa9\r\n")

    def test_other_types_refused(self):
        """An argument that is neither bytes, text nor a number is a bug, not sent."""
        self.assertRaises(TypeError, encode_command, ["SET", None])
        self.assertRaises(TypeError, encode_command, ["SET", True])


class DecodeTests(SynchronousTestCase):
    def test_every_kind(self):
        """Status, error, integer, bulk, null bulk, null array and nested arrays decode to Python values."""
        data = b"+OK\r\n-NOSCRIPT No matching script\r\n:-42\r\n$5\r\nhe\r\nl\r\n$-1\r\n*-1\r\n*2\r\n*1\r\n:1\r\n*0\r\n"
        decoded = RespDecoder().feed(data)
        self.assertEqual(decoded[0], "OK")
        self.assertIsInstance(decoded[1], RedisError)
        self.assertEqual(decoded[1].kind, "NOSCRIPT")
        self.assertEqual(decoded[2:], [-42, b"he\r\nl", None, None, [[1], []]])

    @given(st.lists(replies, max_size=5))
    def test_byte_at_a_time(self, values):
        """Replies split anywhere decode to the same values as in one piece."""
        data = b"".join(encode_reply(value) for value in values)
        self.assertEqual(one_byte_at_a_time(RespDecoder(), data), values)
        self.assertEqual(RespDecoder().feed(data), values)

    def test_partial_reply_waits(self):
        """A reply that has not all arrived yields nothing, then the whole reply."""
        decoder = RespDecoder()
        self.assertEqual(decoder.feed(b"*2\r\n$3\r\nab"), [])
        self.assertEqual(decoder.feed(b"c\r\n:7"), [])
        self.assertEqual(decoder.feed(b"\r\n"), [[b"abc", 7]])


class HostileReplyTests(SynchronousTestCase):
    def assert_refused(self, data, decoder=None):
        decoder = decoder or RespDecoder()
        self.assertRaises(RespError, decoder.feed, data)

    def test_unknown_kind(self):
        """A reply that does not start with one of + - : $ * is refused."""
        self.assert_refused(b"HTTP/1.1 200 OK\r\n")

    def test_bad_integers(self):
        """Integers and lengths that are not decimal numbers are refused."""
        for data in (b":12a\r\n", b":\r\n", b"$abc\r\n", b"*1.5\r\n", b":" + b"9" * 30 + b"\r\n", b"$-2\r\n",
                     b"*-3\r\n"):
            self.assert_refused(data)

    def test_bulk_without_crlf(self):
        """A bulk string not followed by CRLF is refused."""
        self.assert_refused(b"$3\r\nabcXY")

    def test_oversized_bulk(self):
        """A bulk string longer than the bound is refused from its length line, before any of it is buffered."""
        self.assert_refused(b"$1025\r\n", RespDecoder(max_bulk=1024))

    def test_long_line_scanned_once(self):
        """A long line trickling in is searched for its end once, not from its start at every read."""

        class CountingBuffer(bytearray):
            scanned = 0

            def find(self, sub, start=0, end=None):
                found = super().find(sub, start, end)
                stop = len(self) if end is None else min(end, len(self))
                self.scanned += (found + len(sub) if found >= 0 else stop) - start
                return found

        decoder = RespDecoder()
        decoder._buffer = buffer = CountingBuffer()
        line = b"+" + b"x" * 16384 + b"\r\n"
        self.assertEqual(one_byte_at_a_time(decoder, line * 2), ["x" * 16384] * 2)
        self.assertLessEqual(buffer.scanned, 4 * len(line) * 2)

    def test_endless_line(self):
        """A status line longer than the bound is refused without waiting for its end."""
        decoder = RespDecoder()
        self.assertEqual(decoder.feed(b"+" + b"x" * (MAX_LINE - 1)), [])
        self.assert_refused(b"x" * 10, decoder)

    def test_too_many_elements(self):
        """Arrays whose elements add up past the bound, at any depth, are refused."""
        self.assert_refused(b"*3\r\n", RespDecoder(max_elements=2))
        self.assert_refused(b"*2\r\n*2\r\n", RespDecoder(max_elements=3))

    def test_too_deep(self):
        """Arrays nested past the bound are refused."""
        self.assert_refused(b"*1\r\n" * 3, RespDecoder(max_depth=2))

    def test_element_count_resets(self):
        """The element bound is per reply: many small replies in a row are fine."""
        decoder = RespDecoder(max_elements=2)
        self.assertEqual(decoder.feed(b"*2\r\n:1\r\n:2\r\n" * 5), [[1, 2]] * 5)

    @given(st.binary(max_size=200))
    def test_garbage_never_crashes(self, data):
        """Any bytes either decode or raise RespError: never another exception."""
        try:
            one_byte_at_a_time(RespDecoder(max_bulk=64, max_elements=64), data)
        except RespError:
            pass


class ReplyValueTests(SynchronousTestCase):
    def test_text(self):
        """Bulk strings read as UTF-8, bad bytes replaced; other values as their text."""
        self.assertEqual([reply_text(b"caf\xc3\xa9"), reply_text(b"\xff"), reply_text(12)], ["café", "\ufffd", "12"])

    def test_number(self):
        """Integers, and bulk strings spelling a number, read as whole numbers; anything else is a ValueError."""
        self.assertEqual([reply_number(7), reply_number(b"12"), reply_number(b"1.5e3")], [7, 12, 1500])
        self.assertRaises(ValueError, reply_number, b"twelve")
