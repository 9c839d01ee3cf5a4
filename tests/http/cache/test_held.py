"""
Tests for L{netproxy.http.cache.held}: the memory tier of the SQLite store,
what one entry held costs and the bound of bytes all of them keep to, least
recently used first out.
"""

from twisted.trial.unittest import SynchronousTestCase

from netproxy.http.cache.entry import Entry
from netproxy.http.cache.held import OVERHEAD, RECORD_FACTOR, Held, HeldEntries

RECORD = b'{"version":1}'
#: What a held entry with RECORD and no body costs.
BARE = RECORD_FACTOR * len(RECORD) + OVERHEAD


def held(body=None, id=1, used=0.0, record=RECORD):
    """:returns: a L{Held} entry with C{body}, its cost as held.py counts it."""
    length = 0 if body is None else len(body)
    return Held(Entry(b"key", {}, length, 0), record, body, id, used)


class HeldTests(SynchronousTestCase):
    """What one L{Held} entry costs, and keeping its body."""

    def test_cost_without_body(self):
        """An entry without its body costs its record several times over, plus a fixed overhead."""
        self.assertEqual(held().cost, BARE)

    def test_cost_with_body(self):
        """An entry held with its body costs the body's bytes too."""
        self.assertEqual(held(b"x" * 1000).cost, BARE + 1000)

    def test_keep(self):
        """keep holds the body and adds its bytes to the cost."""
        entry = held()
        entry.keep(b"y" * 500)
        self.assertEqual((entry.body, entry.cost), (b"y" * 500, BARE + 500))

    def test_fields(self):
        """An entry keeps its row id and time of last recorded use."""
        entry = held(id=7, used=12.5)
        self.assertEqual((entry.id, entry.used, entry.entry.key), (7, 12.5, b"key"))


class HeldEntriesTests(SynchronousTestCase):
    """L{HeldEntries}: held by name within a bound, least recently used out first."""

    def test_get(self):
        """What is held is found by its name; other names find nothing."""
        entries = HeldEntries(10 * BARE)
        one = held()
        entries.hold(b"a", one)
        self.assertIs(entries.get(b"a"), one)
        self.assertIsNone(entries.get(b"b"))

    def test_bound(self):
        """Holding past the bound drops the least recently held first."""
        entries = HeldEntries(3 * BARE)
        for name in (b"a", b"b", b"c", b"d"):
            entries.hold(name, held())
        self.assertEqual([entries.get(name) is not None for name in (b"a", b"b", b"c", b"d")],
                         [False, True, True, True])

    def test_exactly_at_bound(self):
        """Entries costing exactly the bound in all are all held."""
        entries = HeldEntries(2 * BARE + 100)
        entries.hold(b"a", held(b"x" * 100))
        entries.hold(b"b", held())
        self.assertIsNotNone(entries.get(b"a"))
        self.assertIsNotNone(entries.get(b"b"))

    def test_used_moves_to_end(self):
        """An entry counted as used goes out after those used less recently."""
        entries = HeldEntries(2 * BARE)
        entries.hold(b"a", held())
        entries.hold(b"b", held())
        entries.used(b"a")
        entries.hold(b"c", held())
        self.assertEqual([entries.get(name) is not None for name in (b"a", b"b", b"c")], [True, False, True])

    def test_get_is_no_use(self):
        """get alone does not count as a use: the order is unchanged."""
        entries = HeldEntries(2 * BARE)
        entries.hold(b"a", held())
        entries.hold(b"b", held())
        entries.get(b"a")
        entries.hold(b"c", held())
        self.assertIsNone(entries.get(b"a"))

    def test_larger_than_bound(self):
        """An entry costing more than the whole bound is not held, and evicts nothing else."""
        entries = HeldEntries(2 * BARE)
        entries.hold(b"a", held())
        entries.hold(b"big", held(b"x" * (2 * BARE)))
        self.assertIsNone(entries.get(b"big"))
        self.assertIsNotNone(entries.get(b"a"))

    def test_larger_than_bound_replaces(self):
        """A new version too large to hold forgets the older one held for the name."""
        entries = HeldEntries(2 * BARE)
        entries.hold(b"a", held())
        entries.hold(b"a", held(b"x" * (2 * BARE)))
        self.assertIsNone(entries.get(b"a"))

    def test_zero_bound(self):
        """A bound of 0 holds nothing."""
        entries = HeldEntries(0)
        entries.hold(b"a", held())
        self.assertIsNone(entries.get(b"a"))

    def test_replace_accounted(self):
        """Holding a name again replaces the entry and counts only the new one's cost."""
        entries = HeldEntries(2 * BARE)
        for id in range(10):
            entries.hold(b"a", held(id=id))
        entries.hold(b"b", held())
        self.assertEqual((entries.get(b"a").id, entries.get(b"b") is not None), (9, True))

    def test_forget(self):
        """forget drops one name and frees its cost; forgetting an unknown name does nothing."""
        entries = HeldEntries(2 * BARE)
        entries.hold(b"a", held())
        entries.hold(b"b", held())
        entries.forget(b"a")
        entries.forget(b"unknown")
        self.assertIsNone(entries.get(b"a"))
        entries.hold(b"c", held())
        self.assertIsNotNone(entries.get(b"b"))
        self.assertIsNotNone(entries.get(b"c"))

    def test_clear(self):
        """clear drops everything and frees the whole bound."""
        entries = HeldEntries(2 * BARE)
        entries.hold(b"a", held())
        entries.hold(b"b", held())
        entries.clear()
        self.assertEqual([entries.get(name) for name in (b"a", b"b")], [None, None])
        entries.hold(b"c", held())
        entries.hold(b"d", held())
        self.assertEqual([entries.get(name) is not None for name in (b"c", b"d")], [True, True])

    def test_kept_body_held_again(self):
        """An entry forgotten, given its body with keep and held again counts its new cost: the bound holds."""
        entries = HeldEntries(2 * BARE + 100)
        entry = held()
        entries.hold(b"a", entry)
        entries.hold(b"b", held())
        entries.forget(b"a")
        entry.keep(b"x" * 101)
        entries.hold(b"a", entry)
        # a (BARE + 101) and b (BARE) exceed the bound: b, the older, goes.
        self.assertEqual([entries.get(name) is not None for name in (b"a", b"b")], [True, False])
