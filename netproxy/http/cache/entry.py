# -*- test-case-name: tests.http.cache.test_entry -*-
"""
What a cache store holds: the L{Entry} of a stored response, the record its
metadata is kept as (and the text header fields take in it), the checks of
a body against its entry, and the errors a store's readers and writers
report.  It imports nothing else of the cache, so that every store,
producer and writer can build on it.
"""

import base64
import binascii
import json
import zlib
from dataclasses import dataclass
from typing import Any

from netproxy.errors import NetproxyError

#: The most body bytes a store reads or writes to a consumer in one reactor
#: turn; bodies up to this size are checked whole before any byte is sent.
CHUNK_SIZE = 64 * 1024

#: The version of the record format written by L{encode_record}.
RECORD_VERSION = 1

# Made once: json.dumps and json.loads with arguments build a new encoder
# or decoder on every call, a cost paid for every response stored.
_encode_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_decode_json = json.JSONDecoder().decode
_RECORD = b'{"version":%d,"key":"%%s","meta":%%s,"length":%%d,"checksum":%%d}' % (RECORD_VERSION,)


class DamagedEntry(NetproxyError):
    """
    A stored body does not match its entry's length or checksum, or cannot be
    read: the store has discarded the entry, and the response must be fetched
    afresh (or, if part of the body was already sent, the client's
    connection aborted).

    :ivar key: the entry's key.
    """

    def __init__(self, key: bytes, reason: str) -> None:
        super().__init__(f"damaged cache entry: {reason}")
        self.key = key


class BodyAbandoned(NetproxyError):
    """
    A body followed as it was written will not be complete: its writer was
    aborted (the response was cut short or too large to store) or could
    not write it.
    """


class StreamStopped(NetproxyError):
    """
    The consumer stopped a body stream (its client went away) before the end
    of the body.
    """


@dataclass(frozen=True)
class Entry:
    """
    A stored response as a store knows it.  Entries are values: to change an
    entry's metadata, call L{IStore.update}.

    :ivar key: the key chosen by the cache layer.
    :ivar meta: what the cache layer stored with the body (status, headers,
        times...); JSON-serialisable, and read-only once stored.
    :ivar length: the body's size in bytes.
    :ivar checksum: C{zlib.crc32} of the body.
    """

    key: bytes
    meta: dict[str, Any]
    length: int
    # CRC-32 rather than a cryptographic hash: it guards against torn and
    # garbled writes, not against an adversary who can write the cache
    # directory, and it costs a fraction of SHA-256 on every body stored.
    checksum: int


class Held:
    """
    An entry a store holds in memory: its L{Entry}, its body when it is
    kept too (or L{None}), and the bytes it counts for.
    """

    __slots__ = ("entry", "body", "size")

    def __init__(self, entry: Entry, body: bytes | None, size: int) -> None:
        self.entry = entry
        self.body = body
        self.size = size


def same_body(a: Entry, b: Entry) -> bool:
    """
    :returns: whether entries C{a} and C{b} describe the same body, so that
        what was read or checked for one holds for the other.
    """
    return a.length == b.length and a.checksum == b.checksum


def check_body(entry: Entry, body: bytes) -> None:
    """
    :param entry: an L{Entry}.
    :param body: the whole body stored for it.
    :raises DamagedEntry: if C{body} does not match the entry's length and
        checksum.
    """
    if len(body) != entry.length:
        raise DamagedEntry(entry.key, f"its body is {len(body)} bytes, its record says {entry.length}")
    if zlib.crc32(body) != entry.checksum:
        raise DamagedEntry(entry.key, "its body does not match its checksum")


def encode_fields(fields: list[tuple[bytes, bytes]]) -> str:
    """
    :returns: header fields as one text for a record's metadata, a line
        C{name:value} each: a name is a token and no value holds a line
        break (as L{netproxy.http.head} parses them), so nothing is lost,
        and a record holds one string rather than a list per field, cheaper
        to encode, to decode and to keep.
    """
    return b"\n".join([b"%s:%s" % field for field in fields]).decode("latin-1")


def decode_fields(text: str) -> list[tuple[bytes, bytes]]:
    """
    :returns: the fields L{encode_fields} wrote as C{text}.
    :raises ValueError: when a line has no colon (the text is damaged).
    """
    if not text:
        return []
    fields = [line.partition(b":") for line in text.encode("latin-1").split(b"\n")]
    if not all(colon for _, colon, _ in fields):
        raise ValueError("a stored header field without a colon")
    return [(name, value) for name, _, value in fields]


def encode_record(entry: Entry) -> bytes:
    """
    :returns: the JSON record of C{entry}: the key (base64), the metadata,
        the body's length and checksum, and the format version.  A store's
        size accounts for each entry as its body's length plus this record's.
    :raises TypeError: if the entry's metadata is not JSON-serialisable.
    """
    key = binascii.b2a_base64(entry.key, newline=False)
    length, checksum = entry.length, entry.checksum
    if type(length) is int and type(checksum) is int:
        # The JSON the encoder would write for the whole record, less the
        # cost of encoding its fixed part (a quarter of the whole).
        return _RECORD % (key, _encode_json(entry.meta).encode("ascii"), length, checksum)
    record = {"version": RECORD_VERSION, "key": key.decode("ascii"), "meta": entry.meta, "length": length,
              "checksum": checksum}
    return _encode_json(record).encode("ascii")


def decode_record(data: bytes) -> Entry:
    """
    :returns: the entry recorded in C{data} by L{encode_record}, with its own
        copy of the metadata.
    :raises ValueError: if C{data} is not such a record.
    """
    # Records are ASCII: decoding them here spares json.loads guessing the
    # encoding of bytes.  Bytes that are not UTF-8 raise UnicodeDecodeError,
    # a ValueError like any other damage.
    record = _decode_json(data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data)
    if not isinstance(record, dict) or record.get("version") != RECORD_VERSION:
        raise ValueError("not a cache record of a known version")
    try:
        key = base64.b64decode(record["key"], validate=True)
        meta, length, checksum = record["meta"], record["length"], record["checksum"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"incomplete cache record ({e})") from None
    # bool is an int: type() keeps True out of the length.
    if not isinstance(meta, dict) or type(length) is not int or type(checksum) is not int:
        raise ValueError("malformed cache record")
    if length < 0 or not 0 <= checksum < 2**32:
        raise ValueError("malformed cache record")
    return Entry(key, meta, length, checksum)
