"""
Tests for L{netproxy.textfile}: the operator's text files read as UTF-8, with
errors that name the file and the line.
"""

from pathlib import Path

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from netproxy.textfile import read_text


class ReadError(Exception):
    """
    The error class the tests ask L{read_text} to raise.
    """


class ReadTextTests(SynchronousTestCase):
    """
    L{read_text} reads a file the way every configuration file is read.
    """

    def write(self, content: bytes) -> FilePath:
        path = FilePath(self.mktemp())
        path.setContent(content)
        return path

    def test_path_forms(self) -> None:
        """A FilePath, a str and an os.PathLike path read the same name and text."""
        path = self.write("grüß\n".encode("utf-8"))
        for given in (path, path.path, Path(path.path), path.asBytesMode()):
            self.assertEqual(read_text(given, ReadError, "test file"), (path.path, "grüß\n"))

    def test_byte_order_mark(self) -> None:
        """A UTF-8 byte order mark at the start is not part of the text."""
        self.assertEqual(read_text(self.write(b"\xef\xbb\xbfa\n"), ReadError, "test file")[1], "a\n")

    def test_missing(self) -> None:
        """A file that cannot be read raises the given error, naming what it is and its path."""
        path = FilePath(self.mktemp())
        error = self.assertRaises(ReadError, read_text, path, ReadError, "password file")
        self.assertTrue(str(error).startswith(f"cannot read password file {path.path}: "), str(error))

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 raise the given error naming the file and the line."""
        path = self.write(b"one\ntwo\nthr\xffee\n")
        error = self.assertRaises(ReadError, read_text, path, ReadError, "test file")
        self.assertEqual(str(error), f"{path.path} line 3: not UTF-8 text (invalid start byte)")
