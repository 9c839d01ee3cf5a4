# -*- test-case-name: tests.http.cache.test_sqlite_index -*-
"""
The index of L{netproxy.http.cache.sqlite_store.SQLiteStore}: one SQLite
database in the cache directory, in WAL mode, that every process serving
from the directory reads and writes.  Each entry is one row: its name
(C{sha256} of its key), its last use, its size as accounted, its record
(L{netproxy.http.cache.entry.encode_record}), and its body when it is
small or else the name of the file that holds it.  The totals (bytes and
entries) are kept by triggers in the same transactions as the rows, so that
no process ever needs to sum a million rows to know them.

Why SQLite, measured on this design's candidates (docs/cache.rst): storing
a small response costs one row in an open transaction (about 20 us, against
the 240 us of the two files per entry it replaces), a lookup one indexed
read, memory stays the page cache's (2 MiB) whatever the number of entries,
a restart has nothing to scan, and several processes share one index with
readers never blocked.

Writes are grouped: the first write of a reactor turn opens a transaction,
committed when the turn ends (L{commit} is scheduled with C{callLater(0)}),
so that a burst of stored misses costs one commit.  This connection sees its
own writes at once; other processes see them once committed.  L{commit}
may also be called at once, where a change must be visible to others before
returning (a removal).

Nothing is fsynced (C{synchronous=OFF}), as the files of the store it
replaced were not: a process killed at any moment loses at most the
transaction of its last turn, and SQLite's journal keeps the database
whole; a power cut may damage the database, which is then detected when it
is opened and the cache started afresh
(L{netproxy.http.cache.sqlite_schema.open_index}).
"""

import sqlite3
from collections.abc import Callable
from typing import Any, NamedTuple

from twisted.internet.interfaces import IDelayedCall, IReactorTime

class Row(NamedTuple):
    """
    An entry's row.

    :ivar id: the row's id, new for every version of the entry: never
        reused (C{AUTOINCREMENT}), so that another process holding an old
        version's id never takes a new version for it.
    :ivar used: when it was last used (POSIX time, as the store's clock).
    :ivar record: its record.
    :ivar body: its body, when it is kept in the row, else L{None}.
    :ivar file: else the name of its body's file, relative to the cache directory.
    """

    id: int
    used: float
    record: bytes
    body: bytes | None
    file: str | None


class Evicted(NamedTuple):
    """
    An entry removed to make room: its name, and its body's file if it has one.
    """

    name: bytes
    file: str | None


class Index:
    """
    The rows of one cache directory's entries, through one connection.

    :param connection: a connection opened by L{open_index}.
    :param reactor: schedules the commit at the end of each turn that wrote.
    :param failed: called with the error when a commit fails: what the turn
        wrote is then rolled back, and whatever the caller holds of it in
        memory must go too.
    """

    def __init__(
        self, connection: sqlite3.Connection, reactor: IReactorTime, failed: Callable[[sqlite3.Error], object]
    ) -> None:
        self._db = connection
        self._reactor = reactor
        self._failed = failed
        self._pending: IDelayedCall | None = None
        self._after: list[Callable[[], object]] = []
        # The totals as of this transaction, kept up to date by each change
        # it makes, so that they are read once per turn, not per change.
        self._totals: list[int] | None = None

    def find(self, name: bytes) -> Row | None:
        """
        :returns: the row of the entry named C{name}, or L{None}.
        """
        found = self._db.execute("SELECT id, used, record, body, file FROM entries WHERE name = ?", (name,)).fetchone()
        return None if found is None else Row(*found)

    def current(self, name: bytes) -> int | None:
        """
        :returns: the id of the row of C{name}'s current version, or L{None}.
        """
        found = self._db.execute("SELECT id FROM entries WHERE name = ?", (name,)).fetchone()
        return None if found is None else int(found[0])

    def put(self, name: bytes, used: float, size: int, record: bytes, body: bytes | None, file: str | None) -> tuple[int, str | None]:
        """
        Store a new version of an entry, replacing any other.

        :returns: the new row's id, and the file of the version it replaced
            (for the caller to delete once committed), if any.
        """
        old = self._delete("DELETE FROM entries WHERE name = ? RETURNING size, file", name)
        cursor = self._db.execute(
            "INSERT INTO entries (name, used, size, record, body, file) VALUES (?, ?, ?, ?, ?, ?)",
            (name, used, size, record, body, file),
        )
        self._count(size, 1)
        assert cursor.lastrowid is not None, "an INSERT sets it"
        return cursor.lastrowid, old

    def replace_record(self, id: int, used: float, size: int, record: bytes) -> int | None:
        """
        Replace the row C{id} by one with a new record and the same body:
        a new id, so that other processes see the entry changed.

        :returns: the new row's id, or L{None} if the row was gone.
        """
        self._write()
        old = self._db.execute("DELETE FROM entries WHERE id = ? RETURNING name, size, body, file", (id,)).fetchone()
        if old is None:
            return None
        self._count(-old[1], -1)
        cursor = self._db.execute(
            "INSERT INTO entries (name, used, size, record, body, file) VALUES (?, ?, ?, ?, ?, ?)",
            (old[0], used, size, record, old[2], old[3]),
        )
        self._count(size, 1)
        assert cursor.lastrowid is not None, "an INSERT sets it"
        return cursor.lastrowid

    def touch(self, id: int, used: float) -> None:
        """
        Record a use of the row C{id}.
        """
        self._write()
        self._db.execute("UPDATE entries SET used = ? WHERE id = ?", (used, id))

    def remove(self, name: bytes, id: int | None = None) -> Evicted | None:
        """
        Delete the row of C{name} (only if its id is C{id}, when given).

        :returns: what was removed, or L{None} if there was no such row.
        """
        if id is None:
            found = self._deleted("DELETE FROM entries WHERE name = ? RETURNING size, file", name)
        else:
            found = self._deleted("DELETE FROM entries WHERE id = ? RETURNING size, file", id)
        return None if found is None else Evicted(name, found[0])

    def _delete(self, statement: str, value: object) -> str | None:
        found = self._deleted(statement, value)
        return None if found is None else found[0]

    def _deleted(self, statement: str, value: object) -> tuple[str | None] | None:
        """
        Run C{statement}, a C{DELETE} of at most one row C{RETURNING size, file}.

        :returns: the deleted row's C{(file,)}, or L{None}.
        """
        self._write()
        found = self._db.execute(statement, (value,)).fetchone()
        if found is None:
            return None
        self._count(-found[0], -1)
        return (found[1],)

    def _count(self, size: int, entries: int) -> None:
        if self._totals is not None:
            self._totals[0] += size
            self._totals[1] += entries

    def evict(self, excess: int) -> list[Evicted]:
        """
        Delete the least recently used rows until at least C{excess} bytes are freed.

        :returns: what was removed.
        """
        self._write()
        freed = 0
        last = None
        # Finds the last row to go in the index of uses, then deletes up to
        # it in one statement: a batch costs little more than one row.
        for used, id, size in self._db.execute("SELECT used, id, size FROM entries ORDER BY used, id"):
            last = (used, id)
            freed += size
            if freed >= excess:
                break
        if last is None:
            return []
        evicted = self._db.execute(
            "DELETE FROM entries WHERE used <= ? AND (used < ? OR id <= ?) RETURNING name, file, size",
            (last[0], last[0], last[1]),
        ).fetchall()
        self._count(-sum(size for _, _, size in evicted), -len(evicted))
        return [Evicted(name, file) for name, file, _ in evicted]

    def oldest(self) -> float:
        """
        :returns: the oldest recorded use, or 0 when there is no entry.
        """
        found = self._db.execute("SELECT used FROM entries ORDER BY used LIMIT 1").fetchone()
        return 0.0 if found is None else float(found[0])

    def referenced(self, name: bytes, file: str) -> bool:
        """
        :returns: whether the current version of C{name} keeps its body in C{file}.
        """
        found = self._db.execute("SELECT 1 FROM entries WHERE name = ? AND file = ?", (name, file)).fetchone()
        return found is not None

    def totals(self) -> tuple[int, int]:
        """
        :returns: the bytes and the number of the entries, as committed and
            as this connection has changed them since.
        """
        if self._totals is None:
            bytes_, entries = self._db.execute("SELECT bytes, entries FROM totals").fetchone()
            if not self._db.in_transaction:
                return int(bytes_), int(entries)
            self._totals = [int(bytes_), int(entries)]
        return self._totals[0], self._totals[1]

    def commit(self) -> None:
        """
        Commit what this turn wrote, if anything: other processes see it
        from now on, and the calls registered with L{after_commit} are made.

        :raises sqlite3.Error: when it could not be committed: it is rolled
            back, the calls dropped, and C{failed} called first.
        """
        if self._pending is not None:
            if self._pending.active():
                self._pending.cancel()
            self._pending = None
        after, self._after = self._after, []
        self._totals = None
        try:
            if self._db.in_transaction:
                self._db.commit()
        except sqlite3.Error as e:
            try:
                self._db.rollback()
            except sqlite3.Error:
                pass  # rolled back already, or the connection is gone
            self._failed(e)
            raise
        for call in after:
            call()

    def _commit_at_end_of_turn(self) -> None:
        self._pending = None
        try:
            self.commit()
        except sqlite3.Error:
            pass  # reported to failed

    def after_commit(self, call: Callable[[], object]) -> None:
        """
        Call C{call} once what this turn wrote is committed: a body file is
        deleted only once no committed row names it.
        """
        self._write()
        self._after.append(call)

    def query(self, statement: str, parameters: tuple[object, ...]) -> list[tuple[Any, ...]]:
        """
        :returns: the rows C{statement} reads, for the tables other modules
            keep in the index (L{netproxy.http.cache.fetch_leases}).
        """
        return self._db.execute(statement, parameters).fetchall()

    def change(self, statement: str, parameters: tuple[object, ...]) -> None:
        """
        Run C{statement}, a change, in this turn's transaction.
        """
        self._write()
        self._db.execute(statement, parameters)

    def close(self) -> None:
        """
        Commit, then close the connection.
        """
        self.commit()
        self._db.close()

    def _write(self) -> None:
        if not self._db.in_transaction:
            self._db.execute("BEGIN IMMEDIATE")
        if self._pending is None:
            self._pending = self._reactor.callLater(0, self._commit_at_end_of_turn)
