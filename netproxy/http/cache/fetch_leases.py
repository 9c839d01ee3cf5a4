# -*- test-case-name: tests.http.cache.test_fetch_leases -*-
"""
Which process fetches a miss, where several share one cache directory: a
lease per entry name in the index (the C{fetches} table of
L{netproxy.http.cache.sqlite_index}), so that concurrent misses for one
URL arriving at different workers make one upstream request.

A process takes the lease before it fetches, committed at once so that
the others see it; it gives it back in the same transaction as the entry
it stored (or when it stored nothing), so that a process seeing the lease
gone finds the entry.  A lease whose process is no longer running (killed)
or that is older than L{LEASE_SECONDS} is taken over: nobody waits for ever
on a fetch that will not end.
"""

import os

from netproxy.http.cache.sqlite_index import Index
from netproxy.processes import running

#: The longest a process waits for another's fetch before fetching itself.
LEASE_SECONDS = 30.0


class FetchLeases:
    """
    The leases of one process.

    :param index: the shared index.
    :param pid: this process's id.
    """

    def __init__(self, index: Index, pid: int | None = None) -> None:
        self._index = index
        self._pid = os.getpid() if pid is None else pid

    def _held_elsewhere(self, name: bytes, now: float) -> bool:
        rows = self._index.query("SELECT pid, started FROM fetches WHERE name = ?", (name,))
        if not rows:
            return False
        pid, started = rows[0]
        return bool(pid != self._pid and now - started < LEASE_SECONDS and running(pid))

    def claim(self, name: bytes, now: float) -> bool:
        """
        Take the lease of C{name}, unless another process holds it.

        :returns: whether this process now holds it (and must L{release} it).
        :raises sqlite3.Error: when the index cannot be written.
        """
        # The write lock first: two processes cannot both see it free.
        self._index.change("DELETE FROM fetches WHERE name = ? AND pid = ?", (name, self._pid))
        if self._held_elsewhere(name, now):
            self._index.commit()
            return False
        self._index.change("INSERT OR REPLACE INTO fetches (name, pid, started) VALUES (?, ?, ?)",
                           (name, self._pid, now))
        self._index.commit()
        return True

    def held_elsewhere(self, name: bytes, now: float) -> bool:
        """
        :returns: whether another running process holds the lease of C{name}.
        """
        return self._held_elsewhere(name, now)

    def forget_dead(self) -> int:
        """
        Delete the leases of processes no longer running (killed while they
        fetched), which nobody else may need again: at start-up.

        :returns: how many were deleted.
        """
        dead = [pid for (pid,) in self._index.query("SELECT DISTINCT pid FROM fetches", ()) if not running(pid)]
        for pid in dead:
            self._index.change("DELETE FROM fetches WHERE pid = ?", (pid,))
        return len(dead)

    def release(self, name: bytes) -> None:
        """
        Give back the lease of C{name}, with what this turn stores.
        """
        self._index.change("DELETE FROM fetches WHERE name = ? AND pid = ?", (name, self._pid))
