# -*- test-case-name: tests.http.cache.test_file_layout -*-
"""
Where L{netproxy.http.cache.file_store.FileStore} keeps its entries on disk,
how it changes them so that a crash never serves a torn entry, and the scan
of the directory at start-up.

Each entry is two files named after C{sha256(key)} (never after the URL),
in one of 256 directories named after the name's first two hex digits, as
Squid shards its own::

    <cache dir>/3f/3fa8...c1.body            the body
    <cache dir>/3f/3fa8...c1.meta            the record: key, meta, length, checksum
    <cache dir>/3f/<random>3fa8...c1.body.tmp  a body being written
    <cache dir>/3f/<random>3fa8...c1.meta.tmp  a record being written

An entry is removed by deleting its record (then its body); where the
record cannot be deleted, it is emptied, and an empty record means no entry
(L{retire_record}), so that what is removed stays removed, for every process
reading the directory and after a restart.

An entry is stored by writing its body to a temporary file, renaming it into
place, then writing its record to a temporary file and renaming that into
place last (L{write_record}), so that a crash at any moment leaves the old
entry, the new one or none visible.  A crash between the two renames pairs
the old record with the new body: the length and checksum then disagree,
and the store discards the entry instead of serving it.  Nothing is
fsynced: C{kill -9} loses nothing the kernel accepted, and what a power cut
garbles is caught the same way.  One process owns a cache directory.

A record's modification time is its entry's last use, so that L{scan} can
rebuild the order of use after a restart.
"""

import hashlib
import os
import re
from collections.abc import Callable, Container, Iterator
from functools import lru_cache

from twisted.python.filepath import FilePath

from netproxy.escaping import Logger

BODY, META, TEMP = ".body", ".meta", ".tmp"
#: Directory entries examined per reactor turn by L{scan}.
LOAD_BATCH = 100
_SHARD = re.compile("[0-9a-f]{2}")
_NAME = re.compile("[0-9a-f]{64}")


@lru_cache(maxsize=4096)
def file_name(key: bytes) -> str:
    """
    :returns: the name of C{key}'s files, less their suffix.  Remembered
        for recent keys, as a hit asks for its name more than once.
    """
    return hashlib.sha256(key).hexdigest()


def entry_file(root: FilePath[str], name: str, suffix: str) -> FilePath[str]:
    """
    :returns: the file of the entry named C{name} with C{suffix} (L{BODY}
        or L{META}) in the cache directory C{root}.
    """
    return root.child(name[:2]).child(name + suffix)


def remove(path: FilePath[str], log: Logger) -> bool:
    """
    Delete a file, logging to C{log} why it could not be.

    :returns: whether C{path} existed.
    """
    try:
        path.remove()
    except FileNotFoundError:
        return False
    except OSError as e:
        log.error("could not delete {path}: {error}", path=path.path, error=str(e))
    return True


def retire_record(path: FilePath[str], log: Logger) -> bool:
    """
    Remove an entry's record, so that the entry is gone for good: for this
    process, for any other reading the directory, and after a restart.
    When the record cannot be deleted (its directory is read-only, say),
    it is emptied in place instead: an empty record is a tombstone, which
    every reader takes for no entry and L{scan} deletes once it can.

    :returns: whether there was a record.
    :raises OSError: the deletion's error, when the record could be
        neither deleted nor emptied (a read-only file system, an immutable
        file): the entry is still on disk.
    """
    try:
        path.remove()
        return True
    except FileNotFoundError:
        return False
    except OSError as e:
        error = e
    try:
        # Never creates the file: truncate, not open for writing.
        os.truncate(path.path, 0)
    except FileNotFoundError:
        return False
    except OSError:
        raise error from None
    log.error("could not delete {path} ({error}): emptied it instead", path=path.path, error=str(error))
    return True


def write_record(path: FilePath[str], record: bytes, now: float, log: Logger) -> None:
    """
    Put C{record} in place at C{path} atomically, with C{now} as its mtime
    (its entry's last use, read back by L{scan}).

    :raises OSError: when it could not be written; nothing is then left of it.
    """
    temp = path.temporarySibling(TEMP)
    try:
        with temp.open("w") as f:
            f.write(record)
        os.utime(temp.path, (now, now))
        temp.moveTo(path)
    except OSError:
        remove(temp, log)
        raise


def scan(
    root: FilePath[str],
    writing: Container[str],
    indexed: Container[str],
    found: dict[str, tuple[float, int]],
    delete: Callable[[str], object],
    log: Logger,
) -> Iterator[None]:
    """
    Scan the cache directory C{root}, L{LOAD_BATCH} files a step: put each
    entry not yet C{indexed} in C{found}, its name mapped to its record's
    mtime and its size (body plus record), C{delete} entries whose body is
    missing, and remove the temporary files left by a crash (not those of
    paths C{writing}) and bodies without a record.

    :returns: the steps, for a L{twisted.internet.task.Cooperator}.
    """
    try:
        shards = sorted(name for name in root.listdir() if _SHARD.fullmatch(name))
    except OSError as e:
        log.error("could not list cache directory {path}: {error}", path=root.path, error=str(e))
        return
    for shard in shards:
        directory = root.child(shard)
        try:
            filenames = directory.listdir()
        except OSError as e:
            log.error("could not list cache directory {path}: {error}", path=directory.path, error=str(e))
            continue
        records = {filename[: -len(META)] for filename in filenames if filename.endswith(META)}
        for start in range(0, len(filenames), LOAD_BATCH):
            for filename in filenames[start : start + LOAD_BATCH]:
                _scan_file(directory, filename, records, writing, indexed, found, delete, log)
            yield None


def _scan_file(
    directory: FilePath[str],
    filename: str,
    records: set[str],
    writing: Container[str],
    indexed: Container[str],
    found: dict[str, tuple[float, int]],
    delete: Callable[[str], object],
    log: Logger,
) -> None:
    name, suffix = filename[:64], filename[64:]
    if filename.endswith(TEMP):
        if directory.child(filename).path not in writing:
            remove(directory.child(filename), log)
    elif not _NAME.fullmatch(name) or name in indexed:
        pass
    elif suffix == META:
        record, body = directory.child(filename), directory.child(name + BODY)
        try:
            mtime, record_size = record.getModificationTime(), record.getsize()
        except OSError:
            return  # removed since the directory was listed
        if not record_size:
            # A tombstone (retire_record): delete it now, if it can be.
            delete(name)
            return
        try:
            body_size = body.getsize()
        except OSError:
            delete(name)
            return
        found[name] = (mtime, record_size + body_size)
    elif suffix == BODY and name not in records:
        # A record written since the listing would be indexed.
        remove(directory.child(filename), log)
