"""
Tests for L{netproxy.http.cache.entry}: the record an entry's metadata is
kept as, the checks of a body against its entry, and the store's errors.
"""

import base64
import json
import zlib

from twisted.trial.unittest import SynchronousTestCase

from netproxy.errors import NetproxyError
from netproxy.http.cache.entry import (
    BodyAbandoned,
    DamagedEntry,
    Entry,
    Held,
    StreamStopped,
    check_body,
    decode_fields,
    decode_record,
    encode_fields,
    encode_record,
    same_body,
)
from tests.cache_helpers import KEY, META


class RecordTests(SynchronousTestCase):
    """The JSON record an entry's metadata is kept as."""

    def test_round_trip(self):
        """A record decodes to the entry it was made from, whatever bytes the key holds."""
        entry = Entry(b"\x00\xff" + KEY, META, 10, 2**32 - 1)
        self.assertEqual(decode_record(encode_record(entry)), entry)

    def test_invalid(self):
        """Records that are not JSON, of another version, incomplete or of the wrong types raise ValueError."""
        good = json.loads(encode_record(Entry(KEY, META, 10, 5)))
        records = [b"", b"[]", b'{"version": 1, "key": ']
        for field, value in [
            ("version", 2),
            ("key", "not base64!"),
            ("key", 5),
            ("meta", []),
            ("length", True),
            ("length", -1),
            ("length", 1.5),
            ("checksum", 2**32),
        ]:
            records.append(json.dumps({**good, field: value}).encode())
        records.append(json.dumps({k: v for k, v in good.items() if k != "meta"}).encode())
        for record in records:
            self.assertRaises(ValueError, decode_record, record)


class RecordEncodingTests(SynchronousTestCase):
    """The record is the JSON of the entry, however it is written."""

    def test_json(self):
        """A record is the compact JSON of its fields, in order, the key in base64."""
        entry = Entry(b"\x00\xff" + KEY, {"a": [1, "\u00e9"], "t": 1.5}, 10, 2**32 - 1)
        record = {"version": 1, "key": base64.b64encode(entry.key).decode("ascii"), "meta": entry.meta,
                  "length": 10, "checksum": 2**32 - 1}
        self.assertEqual(encode_record(entry), json.dumps(record, separators=(",", ":")).encode("ascii"))

    def test_not_json(self):
        """Metadata that is not JSON raises TypeError; a NaN raises ValueError."""
        self.assertRaises(TypeError, encode_record, Entry(KEY, {"a": object()}, 1, 1))
        self.assertRaises(ValueError, encode_record, Entry(KEY, {"a": float("nan")}, 1, 1))

    def test_odd_numbers(self):
        """A length or checksum that is not an int is written as JSON writes it, and not read back."""
        for entry in (Entry(KEY, {}, True, 5), Entry(KEY, {}, 10, 1.5)):
            record = encode_record(entry)
            self.assertEqual(json.loads(record)["length"], entry.length)
            self.assertRaises(ValueError, decode_record, record)

    def test_text(self):
        """A record read as text decodes as its bytes do; bytes that are not UTF-8 are damage."""
        record = encode_record(Entry(KEY, META, 10, 5))
        self.assertEqual(decode_record(record.decode("ascii")), decode_record(record))
        self.assertRaises(ValueError, decode_record, b'{"version":1,"key":"\xff"}')


class FieldsTextTests(SynchronousTestCase):
    """Header fields as one text in a record's metadata."""

    def test_round_trip(self):
        """Fields come back as they were: order, case, colons in values, obs-text and empty values."""
        fields = [(b"Date", b"Sat, 21 Nov 2026 19:00:00 GMT"), (b"X-Url", b"http://a:1/b"), (b"x-raw", b"caf\xe9"),
                  (b"Empty", b""), (b"Date", b"twice")]
        text = encode_fields(fields)
        self.assertEqual(decode_fields(text), fields)
        self.assertEqual(decode_fields(json.loads(json.dumps(text))), fields)

    def test_none(self):
        """No fields make an empty text, and back."""
        self.assertEqual(encode_fields([]), "")
        self.assertEqual(decode_fields(""), [])

    def test_damaged(self):
        """A line without a colon is damage: ValueError."""
        self.assertRaises(ValueError, decode_fields, "A:1\nbroken\nB:2")
        self.assertRaises(ValueError, decode_fields, "\n")


class BodyCheckTests(SynchronousTestCase):
    """Checking a body against its entry, and comparing entries' bodies."""

    def test_matching_body(self):
        """A body of the entry's length and checksum passes."""
        check_body(Entry(KEY, META, 4, zlib.crc32(b"body")), b"body")

    def test_wrong_length(self):
        """A body of another length raises DamagedEntry, naming both lengths."""
        error = self.assertRaises(DamagedEntry, check_body, Entry(KEY, META, 5, zlib.crc32(b"body")), b"body")
        self.assertEqual((error.key, str(error)), (KEY, "damaged cache entry: its body is 4 bytes, its record says 5"))

    def test_wrong_checksum(self):
        """A body of the right length but another checksum raises DamagedEntry."""
        error = self.assertRaises(DamagedEntry, check_body, Entry(KEY, META, 4, zlib.crc32(b"body")), b"bodx")
        self.assertEqual(str(error), "damaged cache entry: its body does not match its checksum")

    def test_same_body(self):
        """Entries describe the same body when their lengths and checksums agree, whatever their metadata."""
        entry = Entry(KEY, META, 4, 7)
        self.assertTrue(same_body(entry, Entry(b"other", {"v": 2}, 4, 7)))
        self.assertFalse(same_body(entry, Entry(KEY, META, 5, 7)))
        self.assertFalse(same_body(entry, Entry(KEY, META, 4, 8)))


class ValuesTests(SynchronousTestCase):
    """Entries, what a store holds in memory, and the store's errors."""

    def test_entry_frozen(self):
        """An entry is a value: its fields cannot be set."""
        entry = Entry(KEY, META, 4, 7)
        self.assertRaises(AttributeError, setattr, entry, "length", 5)
        self.assertEqual(entry, Entry(KEY, META, 4, 7))

    def test_held(self):
        """A held entry keeps its entry, body and size, and nothing else."""
        entry = Entry(KEY, META, 4, 7)
        held = Held(entry, b"body", 100)
        self.assertEqual((held.entry, held.body, held.size), (entry, b"body", 100))
        self.assertRaises(AttributeError, setattr, held, "other", 1)

    def test_errors(self):
        """The store's errors are netproxy errors, for the exchange to tell apart."""
        for error in (DamagedEntry, BodyAbandoned, StreamStopped):
            self.assertTrue(issubclass(error, NetproxyError), error)
