# -*- test-case-name: tests.http.cache.test_sqlite_schema -*-
"""
The file of the index of L{netproxy.http.cache.sqlite_store.SQLiteStore}:
its tables, the settings it is opened with, and how it is opened, created,
or set aside when it cannot be read (L{open_index}).
"""

import fcntl
import os
import sqlite3

from netproxy.escaping import Logger

#: The schema's version, in the database's C{user_version}: a database of
#: another version is set aside and a new one started.  Version 1 reused
#: the id of the last row deleted; version 2 had no fetches.
SCHEMA_VERSION = 3
#: Pages of 8 KiB pack rows of a few KiB with little slack, where 4 KiB
#: pages hold two rows of 1.5 KiB and waste a quarter; larger pages make
#: each commit write more (each page it changes is written whole to the WAL).
PAGE_SIZE = 8192
#: How long a process waits for another's write transaction, at most one
#: reactor turn of it, before giving up on a write.
BUSY_MILLISECONDS = 200
#: How long opening the index waits for another process's lock, and the
#: suffix of the lock file that orders the processes opening it.
OPEN_SECONDS = 10.0
LOCK = ".lock"
#: Pages the WAL grows to before it is copied back into the database: small
#: enough that the copy, in the committing turn, stays a few milliseconds.
CHECKPOINT_PAGES = 512

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name BLOB NOT NULL UNIQUE,
    used REAL NOT NULL,
    size INTEGER NOT NULL,
    record BLOB NOT NULL,
    body BLOB,
    file TEXT
);
CREATE INDEX IF NOT EXISTS entries_by_use ON entries (used);
CREATE TABLE IF NOT EXISTS totals (
    one INTEGER PRIMARY KEY CHECK (one = 1),
    bytes INTEGER NOT NULL,
    entries INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (1, 0, 0);
CREATE TABLE IF NOT EXISTS fetches (
    name BLOB PRIMARY KEY,
    pid INTEGER NOT NULL,
    started REAL NOT NULL
);
CREATE TRIGGER IF NOT EXISTS entry_added AFTER INSERT ON entries BEGIN
    UPDATE totals SET bytes = bytes + new.size, entries = entries + 1;
END;
CREATE TRIGGER IF NOT EXISTS entry_removed AFTER DELETE ON entries BEGIN
    UPDATE totals SET bytes = bytes - old.size, entries = entries - 1;
END;
CREATE TRIGGER IF NOT EXISTS entry_resized AFTER UPDATE OF size ON entries BEGIN
    UPDATE totals SET bytes = bytes - old.size + new.size;
END;
"""


def open_index(path: str, log: Logger) -> sqlite3.Connection:
    """
    Open the index at C{path}, creating it if missing.  One that cannot be
    read as an index of this version (damaged by a power cut, or of another
    version) is renamed to C{path + ".old"}, with a warning, and a new one
    started: a cache may always be dropped.

    :raises sqlite3.Error: when no index can be opened or created at C{path}
        (a read-only directory, say).
    """
    if sqlite3.sqlite_version_info < (3, 35):
        # For DELETE ... RETURNING; Python 3.11's own builds have 3.39 or later.
        raise sqlite3.NotSupportedError(f"SQLite {sqlite3.sqlite_version} is too old: 3.35 or later is needed")
    try:
        return _open(path)
    except sqlite3.DatabaseError as e:
        # Busy, locked, read-only, I/O, disk full: the index may well be
        # sound, and other processes using it.  Of these operational errors
        # only SQLITE_ERROR means a schema not ours (no such table, column).
        if isinstance(e, sqlite3.OperationalError) and getattr(e, "sqlite_errorcode", None) != sqlite3.SQLITE_ERROR:
            raise
        log.warn("setting aside the cache index {path}: {error}", path=path, error=str(e))
    for suffix in ("", "-wal", "-shm"):
        try:
            os.replace(path + suffix, path + ".old" + suffix)
        except FileNotFoundError:
            pass
        except OSError as e:
            raise sqlite3.OperationalError(f"could not set aside {path}{suffix}: {e.strerror or e}") from None
    return _open(path)


def _open(path: str) -> sqlite3.Connection:
    # Workers starting together take turns at creating the schema and
    # switching to WAL, which SQLite refuses at once (no busy wait) while
    # another connection does it: a lock file orders them, held for the
    # milliseconds an open takes, at start-up, before the reactor runs.
    try:
        lock = open(path + LOCK, "ab")  # noqa: SIM115 - closed below
    except OSError as e:
        raise sqlite3.OperationalError(f"unable to open database file: {e}") from None
    with lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        return _open_locked(path)


def _open_locked(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=OPEN_SECONDS)
    try:
        db.execute(f"PRAGMA page_size = {PAGE_SIZE}")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = OFF")
        db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"it is of version {version}, not {SCHEMA_VERSION}")
        if version == 0:
            db.executescript("BEGIN IMMEDIATE;" + _SCHEMA + f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        # Reads the schema and a table: a file that is no database fails
        # here.  No integrity check: it would read the whole file, for
        # seconds on a large cache; damage found later costs entries only.
        db.execute("SELECT bytes FROM totals").fetchone()
        db.execute(f"PRAGMA busy_timeout = {BUSY_MILLISECONDS}")
    except BaseException:
        db.close()
        raise
    return db
