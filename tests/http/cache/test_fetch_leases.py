"""
Tests for L{netproxy.http.cache.fetch_leases}: which of the processes
sharing a cache directory fetches a miss.
"""

import os
import subprocess

from twisted.internet.task import Clock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.escaping import Logger
from netproxy.http.cache.fetch_leases import LEASE_SECONDS, FetchLeases
from netproxy.http.cache.sqlite_index import Index
from netproxy.http.cache.sqlite_schema import open_index

NAME = b"n" * 32


def dead_pid():
    """:returns: the pid of a process that has exited."""
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


class LeaseTests(SynchronousTestCase):
    """Two processes' leases on one index, as two connections to its file."""

    def setUp(self):
        directory = FilePath(self.mktemp())
        directory.makedirs()
        path = directory.child("index.sqlite").path
        self.clock = Clock()
        self.clock.advance(1000)
        self.indexes = []
        for _ in range(2):
            index = Index(open_index(path, Logger()), self.clock, lambda error: None)
            self.addCleanup(index.close)
            self.indexes.append(index)
        # This process, and another that is running (its parent).
        self.here = FetchLeases(self.indexes[0])
        self.there = FetchLeases(self.indexes[1], pid=os.getppid())

    def test_first_claims(self):
        """The first process to claim a miss holds its lease; the other is refused and sees it held."""
        self.assertTrue(self.here.claim(NAME, 1000))
        self.assertFalse(self.there.claim(NAME, 1000))
        self.assertTrue(self.there.held_elsewhere(NAME, 1000))
        self.assertFalse(self.here.held_elsewhere(NAME, 1000))

    def test_claim_seen_at_once(self):
        """A claim is committed before it returns: the other connection sees it without any turn passing."""
        self.here.claim(NAME, 1000)
        self.assertTrue(self.there.held_elsewhere(NAME, 1000))

    def test_release_with_the_turn(self):
        """A release is seen by others once the turn's transaction commits, with what it stored."""
        self.here.claim(NAME, 1000)
        self.here.release(NAME)
        self.assertTrue(self.there.held_elsewhere(NAME, 1000))
        self.clock.advance(0)
        self.assertFalse(self.there.held_elsewhere(NAME, 1000))
        self.assertTrue(self.there.claim(NAME, 1000))

    def test_release_only_own(self):
        """A process cannot give back another's lease."""
        self.there.claim(NAME, 1000)
        self.here.release(NAME)
        self.clock.advance(0)
        self.assertTrue(self.here.held_elsewhere(NAME, 1000))

    def test_claim_again(self):
        """A process may claim a lease it already holds (left over by an earlier fetch of its own)."""
        self.assertTrue(self.here.claim(NAME, 1000))
        self.assertTrue(self.here.claim(NAME, 1001))

    def test_dead_holder(self):
        """The lease of a process that is no longer running is taken over at once."""
        gone = FetchLeases(self.indexes[1], pid=dead_pid())
        self.assertTrue(gone.claim(NAME, 1000))
        self.assertFalse(self.here.held_elsewhere(NAME, 1000))
        self.assertTrue(self.here.claim(NAME, 1000))

    def test_expired(self):
        """A lease older than LEASE_SECONDS is taken over: nobody waits for ever."""
        self.there.claim(NAME, 1000)
        self.assertTrue(self.here.held_elsewhere(NAME, 1000 + LEASE_SECONDS - 1))
        self.assertFalse(self.here.held_elsewhere(NAME, 1000 + LEASE_SECONDS))
        self.assertTrue(self.here.claim(NAME, 1000 + LEASE_SECONDS))
        self.assertTrue(self.there.held_elsewhere(NAME, 1000 + LEASE_SECONDS))

    def test_forget_dead(self):
        """The leases of processes no longer running are deleted; those of running ones are kept."""
        FetchLeases(self.indexes[1], pid=dead_pid()).claim(NAME, 1000)
        self.there.claim(b"m" * 32, 1000)
        self.assertEqual(self.here.forget_dead(), 1)
        self.clock.advance(0)
        rows = self.indexes[1].query("SELECT pid FROM fetches", ())
        self.assertEqual(rows, [(os.getppid(),)])

    def test_names_apart(self):
        """Leases of different names do not touch each other."""
        self.assertTrue(self.here.claim(NAME, 1000))
        self.assertTrue(self.there.claim(b"m" * 32, 1000))
