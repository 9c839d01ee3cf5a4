# -*- test-case-name: tests.http.cache.test_entry -*-
"""
What a cache store holds: the L{Entry} of a stored response, the record its
metadata is kept as, the checks of a body against its entry, and the errors
a store's readers and writers report.  It imports nothing else of the cache,
so that every store, producer and writer can build on it.
"""

import base64
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


def encode_record(entry: Entry) -> bytes:
    """
    :returns: the JSON record of C{entry}: the key (base64), the metadata,
        the body's length and checksum, and the format version.  A store's
        size accounts for each entry as its body's length plus this record's.
    :raises TypeError: if the entry's metadata is not JSON-serialisable.
    """
    record = {
        "version": RECORD_VERSION,
        "key": base64.b64encode(entry.key).decode("ascii"),
        "meta": entry.meta,
        "length": entry.length,
        "checksum": entry.checksum,
    }
    return json.dumps(record, separators=(",", ":"), allow_nan=False).encode("ascii")


def decode_record(data: bytes) -> Entry:
    """
    :returns: the entry recorded in C{data} by L{encode_record}, with its own
        copy of the metadata.
    :raises ValueError: if C{data} is not such a record.
    """
    record = json.loads(data)
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
