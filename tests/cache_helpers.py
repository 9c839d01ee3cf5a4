"""
What the cache tests share: a fixed time and the HTTP-dates for a time
(the proxy only reads dates, so the tests write their own), and for the
store tests a fake reactor whose turns they drive, bodies of any size,
and consumers that pause, stop or are already closed.
"""

from email.utils import formatdate
from math import floor

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

# 2001-09-09T01:46:40Z: a whole second, so formatted dates round-trip.
T0 = 1_000_000_000.0

KEY = b"https://example.com/private/path?q=1"
META = {"status": 200, "headers": [["Content-Type", "text/plain"]], "stored": 1.5}
MiB = 1024 * 1024
# Each turn of the fake reactor advances its clock by TURN: calls scheduled
# during a turn then wait for the next one, as on the real reactor.
TURN = 1.0


def format_http_date(seconds):
    """
    :param seconds: a POSIX time; the fraction is dropped.
    :returns: it as an IMF-fixdate, such as C{b"Sun, 06 Nov 1994 08:49:37 GMT"}.
    """
    return formatdate(floor(seconds), usegmt=True).encode("ascii")


def date(seconds):
    """
    :returns: a C{Date} field for C{seconds}.
    """
    return (b"Date", format_http_date(seconds))


def body_of(size, seed=0):
    """
    :returns: C{size} bytes of a pattern that differs at every offset within
        256 bytes, and with C{seed}.
    """
    pattern = bytes((i * 7 + seed) % 256 for i in range(256))
    return (pattern * (size // 256 + 1))[:size]


class PausingTransport(StringTransport):
    """
    A transport that, like TCP with a full buffer, pauses its producer from
    within each write.
    """

    def write(self, data):
        super().write(data)
        self.producer.pauseProducing()


class LosingTransport(StringTransport):
    """
    A transport whose connection is lost as the last of C{size} bytes is
    written to it: it stops its producer from within write.
    """

    def __init__(self, size):
        super().__init__()
        self.size = size

    def write(self, data):
        super().write(data)
        if len(self.value()) >= self.size:
            self.producer.stopProducing()


class ClosedTransport(StringTransport):
    """
    A transport already disconnected: it stops a producer from within
    registerProducer, and keeps none.
    """

    def registerProducer(self, producer, streaming):
        producer.stopProducing()


class TurnsMixin:
    """
    A fake reactor for store tests: C{self.clock} is its time (the store's
    C{reactor}), and C{self.schedule} runs steps on its turns, driven by
    C{turn} and C{run_turns}.  C{self.store} is the store under test.
    """

    def setUp(self):
        self.clock = Clock()
        self.turns = Clock()

    def schedule(self, step):
        return self.turns.callLater(TURN, step)

    def turn(self):
        """Run one reactor turn."""
        self.turns.advance(TURN)

    def run_turns(self):
        """
        Run turns until nothing is scheduled.

        :returns: how many turns ran.
        """
        count = 0
        while self.turns.getDelayedCalls():
            self.turn()
            count += 1
        return count

    def put(self, key, body, meta=META, piece=4096):
        """
        Store C{body} under C{key}, written in pieces of C{piece} bytes.

        :returns: what C{finish} returned.
        """
        writer = self.store.writer(key, meta)
        for start in range(0, len(body), piece):
            writer.write(body[start : start + piece])
        return writer.finish()

    def fetch(self, entry):
        """
        Read C{entry}'s body to the end.

        :returns: the bytes the consumer received.
        """
        transport = StringTransport()
        d = self.store.read(entry, transport)
        self.run_turns()
        self.assertIsNone(self.successResultOf(d))
        self.assertIsNone(transport.producer)
        return transport.value()


class FaultyConnection:
    """
    A SQLite connection, for an index to use, whose commits and statements
    fail on demand as a full disk or a read-only file would make them:
    C{fail_commit} is raised by C{commit}, and C{fail_statements} by each
    statement starting with one of its words (C{"DELETE"}, C{"BEGIN"}...).
    """

    def __init__(self, db):
        self.db = db
        self.fail_commit = None
        self.fail_statements = None
        self.words = ()

    def __getattr__(self, name):
        return getattr(self.db, name)

    def fail(self, error, *words):
        """Make the statements starting with C{words} raise C{error}."""
        self.fail_statements, self.words = error, words

    def _check(self, sql):
        if self.fail_statements is not None and sql.lstrip().upper().startswith(self.words):
            raise self.fail_statements

    def execute(self, sql, *args):
        self._check(sql)
        return self.db.execute(sql, *args)

    def executemany(self, sql, *args):
        self._check(sql)
        return self.db.executemany(sql, *args)

    def commit(self):
        if self.fail_commit is not None and self.db.in_transaction:
            raise self.fail_commit
        self.db.commit()
