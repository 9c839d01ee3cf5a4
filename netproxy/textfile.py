# -*- test-case-name: tests.test_textfile -*-
"""
Reading the text files an operator gives netproxy (blocklists, password
files): UTF-8, a byte order mark allowed, errors naming the file and line.
"""

import os

from twisted.python.filepath import FilePath

# Where an operator's file is: a FilePath, or a path as text or os.PathLike.
AnyPath = FilePath[str] | FilePath[bytes] | str | os.PathLike[str]


def read_text(path: AnyPath, error: type[Exception], what: str) -> tuple[str, str]:
    """
    Read a text file the way every configuration file is read.

    :param path: a L{FilePath}, or a path as C{str} or C{os.PathLike}.
    :param error: the exception class to raise, with the message.
    :param what: what the file is, for the message (C{"rules file"}).
    :returns: C{(name, text)}: the file's path as text, and its content.
    :raises error: when the file cannot be read, or is not UTF-8 (the
        message names the line).
    """
    filepath = path.asTextMode() if isinstance(path, FilePath) else FilePath(os.fsdecode(path))
    name = filepath.path
    try:
        content = filepath.getContent()
    except OSError as e:
        raise error(f"cannot read {what} {name}: {e.strerror or e}") from None
    try:
        return name, content.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = content.count(b"\n", 0, e.start) + 1
        raise error(f"{name} line {line}: not UTF-8 text ({e.reason})") from None
