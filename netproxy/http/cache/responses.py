# -*- test-case-name: tests.http.cache.test_responses -*-
"""
The cache as the HTTP proxy sees it: keys for requests, stored responses
found for a request (its variant, when the response varies), and new
responses stored as they stream past.

The policy (what may be stored, what may be reused) is in
L{netproxy.http.cache.policy} and the modules beside it (variants in
L{netproxy.http.cache.vary}, 304s in L{netproxy.http.cache.validation}); bytes on disk are the store's business
(L{netproxy.http.cache.interfaces.IStore}).  This module turns one into the other:
an entry's metadata holds the origin's status line and header fields and
the times RFC 9111's age calculation needs.

A response with C{Vary} is stored under its URL's key plus a secondary key
naming the request fields it varies on, and a marker under the URL's key
alone says which fields those are, so variants live side by side.  The
marker also holds a random generation, part of every variant's key:
removing the marker (invalidation) makes all its variants unreachable at
once, though the store cannot list them.
"""

import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from twisted.internet.interfaces import IReactorTime

from netproxy.escaping import Logger
from netproxy.http.cache import policy
from netproxy.http.cache.entry import Entry, decode_fields, encode_fields
from netproxy.http.cache.fields import Fields
from netproxy.http.cache.interfaces import IStore, IWriter
from netproxy.http.cache.refresh import RefreshRule, matching_rule, rule_url
from netproxy.http.cache.remote_fetches import RemoteFetches
from netproxy.http.cache.status import cache_name
from netproxy.http.cache.validation import updated_headers
from netproxy.http.cache.vary import secondary_key, vary_names
from netproxy.errors import EntryNotRemoved, HTTPError
from netproxy.http.head import ResponseHead
from netproxy.http.message import (
    PSEUDONYM,
    Target,
    forward_headers,
    parse_target,
    response_head_bytes,
)

# Metadata of the marker stored under a URL's key when its response varies:
# the field names, and the generation of its variants.
VARY = "vary"
GENERATION = "generation"
# Metadata of a response: its header fields, as encode_fields writes them
# (named apart from the lists other versions stored, which are then misses).
FIELDS = "fields"

# Stored fields never served as stored: the framing is the proxy's, the age
# is worked out for each response.
_NOT_SERVED = frozenset({b"content-length", b"transfer-encoding", b"age"})
# The default range offset limit (see Cache): a range miss starting within
# the first 16 MiB fetches the whole response.
RANGE_OFFSET_LIMIT = 16 * 1024 * 1024
# Found responses decoded from their entries and kept, for the entries
# requested most recently: a hit then costs no decoding.
_DECODED_KEPT = 2048


def cache_key(target: Target) -> bytes:
    """
    :returns: the key of the response to a request for C{target}: its URL
        with the host lower-cased and the port always written, so that
        spellings of one URL share an entry.
    """
    return b"http://%s:%d%s" % (target.host, target.port, target.path)


@dataclass(frozen=True)
class Found:
    """
    A stored response that may answer a request.

    :ivar entry: its store L{Entry}.
    :ivar stored: what the policy functions know of it.
    :ivar reason: the origin's reason phrase.
    :ivar version: the HTTP version the origin answered with.
    :ivar pseudonym: the received-by of the Via it is served with.
    """

    entry: Entry
    stored: policy.Stored
    reason: bytes
    version: tuple[int, int]
    pseudonym: bytes = PSEUDONYM

    @cached_property
    def fields(self) -> list[tuple[bytes, bytes]]:
        """
        The fields it is served with: see L{served_fields}.
        """
        return served_fields(self.stored.headers, self.version, self.pseudonym)

    @cached_property
    def head(self) -> bytes:
        """
        Its status line and L{fields}, serialised, without the empty line
        that ends a head: each response adds its own fields first.
        """
        return response_head_bytes(self.stored.status, self.reason, self.fields)[:-2]


@dataclass(frozen=True)
class Fetch:
    """
    A response being fetched from the origin and stored, which requests for
    the same key may follow as it arrives (collapsed forwarding).

    :ivar writer: the store's L{netproxy.http.cache.interfaces.IWriter} for its body.
    :ivar head: its L{netproxy.http.head.ResponseHead}.
    :ivar length: its body's length.
    :ivar stored: what the policy functions know of it.
    :ivar request_headers: the fields of the request it answers.
    :ivar pseudonym: the received-by of the Via it is served with.
    """

    writer: IWriter
    head: ResponseHead
    length: int
    stored: policy.Stored
    request_headers: list[tuple[bytes, bytes]]
    pseudonym: bytes = PSEUDONYM

    @cached_property
    def served_head(self) -> bytes:
        """
        Its status line and the fields it is served with (see
        L{served_fields}), serialised once for every request that follows
        it, without the empty line that ends a head.
        """
        fields = served_fields(self.head.headers, self.head.version, self.pseudonym)
        return response_head_bytes(self.head.status, self.head.reason, fields)[:-2]


def served_fields(headers: list[tuple[bytes, bytes]], version: tuple[int, int],
                  pseudonym: bytes) -> list[tuple[bytes, bytes]]:
    """
    :param headers: a stored response's fields.
    :param version: the HTTP version it came with.
    :param pseudonym: the received-by of our Via (the proxy's own).
    :returns: the fields it is served with: the stored ones for the next hop
        (RFC 9110 section 7.6) with our Via, less its framing and Age, which
        each response gets anew.
    """
    fields = forward_headers(headers, via_version=version, pseudonym=pseudonym)
    return [field for field in fields if field[0].lower() not in _NOT_SERVED]


def _variant_key(key: bytes, marker: dict[str, Any], request_headers: list[tuple[bytes, bytes]]) -> bytes:
    names = tuple(name.encode("latin-1") for name in marker[VARY])
    generation = str(marker.get(GENERATION, "")).encode("ascii", "replace")
    return b"\n".join([key, generation, secondary_key(names, request_headers)])


def _found(entry: Entry, rule: RefreshRule | None, pseudonym: bytes) -> Found | None:
    meta = entry.meta
    try:
        stored = policy.Stored(meta["status"], decode_fields(meta[FIELDS]), meta["request_time"],
                               meta["response_time"], rule)
        major, _, minor = meta["version"].partition(".")
        return Found(entry, stored, meta["reason"].encode("latin-1"), (int(major), int(minor)), pseudonym)
    except (KeyError, TypeError, ValueError, AttributeError):
        # Metadata from another version of netproxy, or damaged: a miss.
        return None


class Cache:
    """
    The proxy's shared cache.

    It also knows which misses are being fetched, so that concurrent misses
    for one key make one upstream request: the first request leads (fetches
    and stores), those arriving meanwhile wait for it, and the leader
    settles them once its response head says whether they may share it.

    :param store: an L{netproxy.http.cache.interfaces.IStore}; one shared
        by several processes has C{leases}, and then misses are collapsed
        across them too (L{RemoteFetches}, which needs the C{reactor}).
    :param range_offset_limit: how far into a body a range request that
        misses may start and still have the whole response fetched (and
        stored, if it is no longer than that or the range runs to its
        end); L{None} for no limit, C{0} to forward every range as it is.
    :param rules: the operator's freshness rules
        (L{netproxy.http.cache.refresh}), applied when a response is found,
        so that they apply to what was stored before they changed.
    :param pseudonym: the proxy's Via pseudonym, in the Via of its hits and
        (as L{cache_name} writes it) in C{Cache-Status}, as C{name}.
    :ivar revalidating: the keys of stored responses being revalidated in
        the background (RFC 5861 section 3), one revalidation at a time each.
    """

    log = Logger()

    def __init__(self, store: IStore, reactor: IReactorTime | None = None,
                 rules: Sequence[RefreshRule] = (), range_offset_limit: int | None = RANGE_OFFSET_LIMIT,
                 pseudonym: bytes = PSEUDONYM) -> None:
        self.store = store
        self.pseudonym, self.name = pseudonym, cache_name(pseudonym)
        self.rules = tuple(rules)
        self.range_offset_limit = range_offset_limit
        leases = getattr(store, "leases", None)
        self._remote = None if leases is None or reactor is None else RemoteFetches(
            leases, reactor, lambda key: self._waiting.pop(key, []))
        self.revalidating: set[bytes] = set()
        self._decoded: dict[bytes, Found] = {}
        # key -> the requests waiting for the miss being fetched for it.
        self._waiting: dict[bytes, list[Any]] = {}
        # key -> the Fetch storing its response, once its head has arrived.
        self._fetching: dict[bytes, Fetch] = {}

    def lead(self, key: bytes) -> bool:
        """
        :returns: whether the caller is to fetch C{key}'s miss (then it
            must L{settle} it), L{False} when another request already is.
        """
        if key in self._waiting:
            return False
        self._waiting[key] = []
        # Another process may be fetching it: then those here wait for it.
        return self._remote is None or self._remote.lead(key)

    def wait(self, key: bytes, waiter: Any) -> None:
        """
        Have C{waiter} wait for the miss being fetched for C{key}.
        """
        self._waiting[key].append(waiter)

    def leave(self, key: bytes, waiter: Any) -> None:
        """
        C{waiter} waits no longer (its client went away).
        """
        waiters = self._waiting.get(key, [])
        if waiter in waiters:
            waiters.remove(waiter)

    def settle(self, key: bytes, fetch: Fetch | None = None) -> list[Any]:
        """
        The miss for C{key} is no longer awaited: its response head arrived,
        or none will.

        :param fetch: the L{Fetch} storing the response, which later
            requests for C{key} may follow until it is L{fetched}; or
            L{None}.
        :returns: the requests that were waiting for it.
        """
        if fetch is not None:
            self._fetching[key] = fetch
        elif self._remote is not None:
            self._remote.release(key)
        return self._waiting.pop(key, [])

    def fetching(self, key: bytes) -> Fetch | None:
        """
        :returns: the L{Fetch} storing a response for C{key}, or L{None}.
        """
        return self._fetching.get(key)

    def fetched(self, key: bytes, fetch: Fetch) -> None:
        """
        C{fetch} has ended: stored, or abandoned.
        """
        if self._fetching.get(key) is fetch:
            del self._fetching[key]
            if self._remote is not None:
                self._remote.release(key)

    def rule_for(self, key: bytes) -> RefreshRule | None:
        """
        :returns: the first freshness rule matching the URL of C{key}, or
            L{None}.
        """
        return matching_rule(self.rules, rule_url(key)) if self.rules else None

    def find(self, key: bytes, request_headers: list[tuple[bytes, bytes]]) -> Found | None:
        """
        :returns: the L{Found} response stored for C{key} that the request
            with C{request_headers} selects, or L{None}.
        """
        entry = self.store.get(key)
        if entry is None:
            return None
        if VARY in entry.meta:
            entry = self.store.get(_variant_key(key, entry.meta, request_headers))
            if entry is None:
                return None
        found = self._decoded.get(entry.key)
        if found is None or found.entry is not entry:
            found = _found(entry, self.rule_for(key), self.pseudonym)
            if found is not None:
                if len(self._decoded) >= _DECODED_KEPT:
                    # Cheaper than tracking use: the hot entries come back.
                    self._decoded.clear()
                self._decoded[entry.key] = found
        return found

    def fill(
        self,
        key: bytes,
        request_headers: list[tuple[bytes, bytes]],
        head: ResponseHead,
        request_time: float,
        response_time: float,
        length: int | None = None,
        fields: Fields | None = None,
    ) -> IWriter | None:
        """
        Start storing a response.

        :param head: the origin's L{netproxy.http.head.ResponseHead}.
        :param length: its body's length, when its head says it.
        :param fields: its fields as the policy read them, if it did.
        :returns: an L{netproxy.http.cache.interfaces.IWriter} for its body,
            or L{None} when the store refuses the entry: a body longer than
            the store's C{max_size}, or one it cannot begin to write, or a
            Vary marker it could not keep.  (A write that fails later, once
            the response head has gone to the client, abandons the entry
            and is logged by the store.)
        """
        if length is not None and length > self.store.max_size:
            return None
        names = vary_names(head.headers) if fields is None or b"vary" in fields.names else ()
        if names:
            vary = [name.decode("latin-1") for name in names]
            marker = self.store.get(key)
            if marker is None or marker.meta.get(VARY) != vary:
                # New fields to vary on: the variants stored so far no longer apply.
                marker = self.store.writer(key, {VARY: vary, GENERATION: os.urandom(8).hex()}).finish()
                if marker is None:
                    return None
            key = _variant_key(key, marker.meta, request_headers)
        meta = {
            "status": head.status,
            "reason": head.reason.decode("latin-1"),
            # Text, as the fields: metadata without a list in it is not
            # tracked by the garbage collector, however many are kept.
            "version": "%d.%d" % head.version,
            FIELDS: encode_fields(head.headers),
            "request_time": request_time,
            "response_time": response_time,
        }
        writer = self.store.writer(key, meta)
        if writer.abandoned:
            # The store could not even start it (its directory is read-only,
            # say): nothing will be stored.
            return None
        return writer

    def refresh(
        self, found: Found, headers: list[tuple[bytes, bytes]], request_time: float, response_time: float
    ) -> Found | None:
        """
        Update a stored response with the fields of the 304 that
        revalidated it (RFC 9111 section 4.3.4).

        :returns: the refreshed L{Found}, or L{None} when the store lost it.
        """
        meta = dict(found.entry.meta)
        meta[FIELDS] = encode_fields(updated_headers(found.stored.headers, headers))
        meta["request_time"] = request_time
        meta["response_time"] = response_time
        entry = self.store.update(found.entry.key, meta)
        return None if entry is None else _found(entry, found.stored.rule, self.pseudonym)

    def purge(self, key: bytes) -> bool:
        """
        Remove the response stored for C{key}, all its variants included,
        for good (see L{netproxy.http.cache.interfaces.IStore.remove}).

        :returns: whether there was one.
        :raises EntryNotRemoved: when it could not be removed for good.
        """
        return self.store.remove(key)

    def invalidate(self, urls: list[bytes]) -> None:
        """
        Forget the responses stored for C{urls} (absolute C{http} URLs).
        One that cannot be removed for good is logged, and never served by
        this store again.
        """
        for url in urls:
            try:
                target = parse_target(b"GET", url)
            except HTTPError:
                continue
            # Removing the URL's own entry (or its Vary marker) is enough:
            # variants are only reached through the marker.
            try:
                self.store.remove(cache_key(target))
            except EntryNotRemoved as e:
                self.log.error("could not invalidate {url} in the cache: {error}", url=url.decode("latin-1"),
                               error=str(e))
