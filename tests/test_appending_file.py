"""
Tests for L{netproxy.appending_file}: lines appended whole, by several
writers of one file.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from netproxy.appending_file import AppendingFile


class AppendingFileTests(SynchronousTestCase):
    """
    Each line is appended whole, whoever else appends.
    """

    def test_writers_interleave_lines(self):
        """Two writers of one path append in turn; neither overwrites the other."""
        path = self.mktemp()
        first, second = AppendingFile(path), AppendingFile(path)
        self.addCleanup(first.close)
        self.addCleanup(second.close)
        for index in range(3):
            first.write(f"first {index}\n")
            second.write(f"second {index}\n")
        first.flush()
        with open(path, encoding="utf-8") as file:
            self.assertEqual(file.read().splitlines(), [f"{who} {index}" for index in range(3)
                                                        for who in ("first", "second")])

    def test_existing_kept(self):
        """An existing file is appended to, not truncated."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as file:
            file.write("old\n")
        appending = AppendingFile(path)
        self.addCleanup(appending.close)
        appending.write("new\n")
        with open(path, encoding="utf-8") as file:
            self.assertEqual(file.read(), "old\nnew\n")

    def test_unopenable(self):
        """A path that cannot be opened raises OSError."""
        self.assertRaises(OSError, AppendingFile, os.path.join(self.mktemp(), "no", "such"))
