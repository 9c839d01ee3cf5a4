# -*- test-case-name: tests.http.cache.test_body_files -*-
"""
Where L{netproxy.http.cache.sqlite_store.SQLiteStore} keeps the bodies too
large for a row of its index: one file each, named after the entry and a
random version (so that a new version never overwrites a file someone
still reads), in 256 directories as Squid shards its own::

    <cache dir>/bodies/3f/3fa8...c1-9b2e04d1             a stored body
    <cache dir>/bodies/3f/3fa8...c1-5d0a77e3.1234.tmp    one being written by process 1234

A body is written to its temporary file as it arrives, renamed into place
when complete, and only then named by a row of the index; a file is deleted
only once the row naming it is gone for good.  A crash can therefore leave
files no row names, never a row naming a missing file: L{sweep} deletes
them at start-up, in the background.  It also deletes the files of the
layout this store replaced (two files per entry directly in the cache
directory's shards), so that an upgrade frees their space.
"""

import os
import re
from collections.abc import Callable, Container, Iterator

from netproxy.escaping import Logger
from netproxy.processes import running

BODIES = "bodies"
TEMP = ".tmp"
#: Files looked at per reactor turn by L{sweep}.
SWEEP_BATCH = 200
#: A file renamed into place is named by a row within the same reactor
#: turn: where other processes share the directory, the sweep leaves files
#: younger than this, which one of them may be about to name.
SWEEP_AGE = 60.0

_SHARD = re.compile("[0-9a-f]{2}")
_STORED = re.compile("([0-9a-f]{64})-[0-9a-f]{8}")
_BODY_FILE = re.compile(f"{BODIES}/[0-9a-f]{{2}}/[0-9a-f]{{64}}-[0-9a-f]{{8}}")
_WRITING = re.compile("[0-9a-f]{64}-[0-9a-f]{8}\\.([0-9]+)\\.tmp")
_OLD_LAYOUT = re.compile(".*\\.(body|meta|tmp)")


def new_body_file(name: bytes) -> str:
    """
    :returns: the path, relative to the cache directory, of a new version
        of the body file of the entry named C{name}.
    """
    hexname = name.hex()
    return f"{BODIES}/{hexname[:2]}/{hexname}-{os.urandom(4).hex()}"


def is_body_file(path: str, name: bytes) -> bool:
    """
    :returns: whether C{path} is one of the names L{new_body_file} gives
        the entry named C{name}: a row naming anything else (written by
        hand, or garbled) must not make the store open or delete it.
    """
    hexname = name.hex()
    return _BODY_FILE.fullmatch(path) is not None and path[len(BODIES) + 1 :].startswith(f"{hexname[:2]}/{hexname}-")


def temporary(path: str) -> str:
    """
    :returns: the temporary file a body for C{path} is written to by this process.
    """
    return f"{path}.{os.getpid()}{TEMP}"


def create(root: str, path: str) -> int:
    """
    Create the temporary file of C{path}, and its directory if missing.

    :returns: its descriptor, open for writing.
    :raises OSError: when it cannot be created.
    """
    temp = os.path.join(root, temporary(path))
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    try:
        return os.open(temp, flags, 0o600)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(temp), exist_ok=True)
        return os.open(temp, flags, 0o600)


def delete(root: str, path: str, log: Logger) -> None:
    """
    Delete C{path} under C{root}, logging to C{log} why it could not be.
    """
    try:
        os.remove(os.path.join(root, path))
    except FileNotFoundError:
        pass
    except OSError as e:
        log.error("could not delete {path}: {error}", path=path, error=str(e))


def sweep(
    root: str,
    named: Callable[[bytes, str], bool],
    writing: Container[str],
    not_after: float,
    log: Logger,
) -> Iterator[None]:
    """
    Delete, L{SWEEP_BATCH} files a step, what a crash or an older version
    left in the cache directory C{root}: body files modified no later than
    C{not_after} that no row C{named}, temporary files of processes no
    longer running (and this one's that it is not C{writing}), and the
    files of the old layout.

    :param named: tells whether the entry of a name (C{bytes}) keeps its
        body in a file (a relative path).
    :returns: the steps, for a L{twisted.internet.task.Cooperator}.
    """
    seen = 0
    for shard, directory, filename in _files(root, log):
        seen += 1
        if seen % SWEEP_BATCH == 0:
            yield None
        relative = f"{directory}/{filename}" if directory else f"{shard}/{filename}"
        if directory and _orphan(root, relative, filename, named, writing, not_after):
            delete(root, relative, log)
        elif not directory and _OLD_LAYOUT.fullmatch(filename):
            delete(root, relative, log)
    for shard in _listdir(root, log):
        if _SHARD.fullmatch(shard):
            try:
                os.rmdir(os.path.join(root, shard))
            except OSError:
                pass  # not empty, or not a directory: not ours to remove


def _files(root: str, log: Logger) -> Iterator[tuple[str, str, str]]:
    """
    :returns: C{(shard, directory, filename)} of each file in a shard of
        C{bodies} (C{directory} is its path) or, for the old layout, of the
        cache directory itself (C{directory} empty).
    """
    for base in (BODIES, ""):
        top = os.path.join(root, base) if base else root
        for shard in sorted(_listdir(top, log)):
            if not _SHARD.fullmatch(shard):
                continue
            directory = f"{base}/{shard}" if base else ""
            for filename in _listdir(os.path.join(top, shard), log):
                yield shard, directory, filename


def _orphan(
    root: str, relative: str, filename: str, named: Callable[[bytes, str], bool], writing: Container[str], not_after: float
) -> bool:
    writer = _WRITING.fullmatch(filename)
    if writer is not None:
        pid = int(writer.group(1))
        if pid == os.getpid():
            return os.path.join(root, relative) not in writing
        return not running(pid)
    stored = _STORED.fullmatch(filename)
    if stored is None:
        return False  # not ours
    try:
        if os.stat(os.path.join(root, relative)).st_mtime > not_after:
            return False
    except OSError:
        return False
    return not named(bytes.fromhex(stored.group(1)), relative)


def _listdir(path: str, log: Logger) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []
    except OSError as e:
        log.error("could not list cache directory {path}: {error}", path=path, error=str(e))
        return []
