# -*- test-case-name: tests.test_appending_file,tests.http.test_access_log -*-
"""
Files that several processes append whole lines to (the access logs, which
every worker of C{--workers} writes): each line is one C{write} to a
descriptor opened with C{O_APPEND}, which the kernel appends whole, so lines
from different processes never mix within a line.
"""

import os


class AppendingFile:
    """
    A file written one whole line at a time, with one C{write} call each on
    a descriptor opened for appending, so processes appending to the same
    file never tear each other's lines.

    :param path: the file, created (mode 0666 less the umask, as L{open}
        does) when missing.
    :raises OSError: when it cannot be opened.
    """

    def __init__(self, path: str) -> None:
        self._descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o666)

    def write(self, text: str) -> None:
        """
        Append C{text}; a write cut short (a full disk) is finished by
        further writes.
        """
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(self._descriptor, data):]

    def flush(self) -> None:
        """
        Nothing is buffered.
        """

    def close(self) -> None:
        """
        Close the descriptor.
        """
        os.close(self._descriptor)
