# -*- test-case-name: tests.http.cache.test_held -*-
"""
The memory tier of L{netproxy.http.cache.sqlite_store.SQLiteStore}: what it
knows of its most recently used entries, bodies of the small ones included,
within a bound of bytes, so that a hit on one of them reads nothing.
"""

from collections import OrderedDict

from netproxy.http.cache.entry import Entry

#: What an entry held in memory is accounted, beyond its body: its record
#: decoded into Python objects takes several times the record's JSON, plus
#: the objects that hold it.
RECORD_FACTOR = 4
OVERHEAD = 800


class Held:
    """
    What is known of an entry's current version: the L{Entry}, its body
    when it is small and held in memory, what holding it costs, the id of
    its row in the index and when its use was last recorded there.
    """

    __slots__ = ("entry", "body", "cost", "id", "used")

    def __init__(self, entry: Entry, record: bytes, body: bytes | None, id: int, used: float) -> None:
        self.entry = entry
        self.body = body
        self.cost = RECORD_FACTOR * len(record) + OVERHEAD + len(body or b"")
        self.id = id
        self.used = used

    def keep(self, body: bytes) -> None:
        """
        Hold C{body} too, checked against the entry by the caller.  Not while
        in L{HeldEntries}, which counts the cost it had when held: forget it,
        keep, and hold it again.
        """
        self.body = body
        self.cost += len(body)


class HeldEntries:
    """
    L{Held} entries by name, least recently used first, within C{memory_size} bytes.
    """

    def __init__(self, memory_size: int) -> None:
        self.memory_size = memory_size
        self._held: OrderedDict[bytes, Held] = OrderedDict()
        self._size = 0

    def get(self, name: bytes) -> Held | None:
        """
        :returns: what is held for C{name}, or L{None}; not counted as a use.
        """
        return self._held.get(name)

    def used(self, name: bytes) -> None:
        """
        Count a use of C{name}: the least recently used go first.
        """
        self._held.move_to_end(name)

    def hold(self, name: bytes, held: Held) -> None:
        """
        Hold C{held} for C{name}, replacing what was, unless it costs more
        than the whole bound; drop the least recently used past the bound.
        """
        self.forget(name)
        if held.cost > self.memory_size:
            return
        self._held[name] = held
        self._size += held.cost
        while self._size > self.memory_size:
            self._size -= self._held.popitem(last=False)[1].cost

    def clear(self) -> None:
        """
        Hold nothing.
        """
        self._held.clear()
        self._size = 0

    def forget(self, name: bytes) -> None:
        """
        Hold nothing for C{name}.
        """
        held = self._held.pop(name, None)
        if held is not None:
            self._size -= held.cost
