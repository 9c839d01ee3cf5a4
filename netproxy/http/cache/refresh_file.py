# -*- test-case-name: tests.http.cache.test_refresh_file -*-
"""
A file of operator freshness rules (L{netproxy.http.cache.refresh}), one
per line, re-read on C{SIGHUP} as a blocklist is
(L{netproxy.rules_file.RulesFile}).  A rule holds spaces, which a command
line built by word-splitting (a systemd C{EnvironmentFile=} variable)
cannot carry; a file can.
"""

import os
from collections.abc import Iterable

from twisted.python.filepath import FilePath

from netproxy.escaping import Logger
from netproxy.http.cache.refresh import RefreshRule, parse_rule
from netproxy.textfile import AnyPath, read_text


def parse_rule_lines(lines: Iterable[str], source: str) -> tuple[RefreshRule, ...]:
    """
    Read rules written one per line.  Blank lines are ignored; a word
    starting with C{#} starts a comment, on its own line or after a rule (a
    C{#} inside an expression is the expression's: URLs never hold one).

    :param source: where the lines come from, for error messages.
    :returns: the rules, in order.
    :raises ValueError: at the first bad line, naming C{source} and the line
        number: C{patterns.conf line 3: MAX must be ...}.
    """
    rules = []
    for number, line in enumerate(lines, 1):
        words = line.split()
        for index, word in enumerate(words):
            if word.startswith("#"):
                del words[index:]
                break
        if words:
            try:
                rules.append(parse_rule(" ".join(words)))
            except ValueError as error:
                raise ValueError(f"{source} line {number}: {error}") from None
    return tuple(rules)


def read_rule_file(path: AnyPath) -> tuple[RefreshRule, ...]:
    """
    :param path: a L{FilePath}, or a path as C{str} or C{os.PathLike}.
    :returns: the rules of the file.
    :raises ValueError: when the file cannot be read or decoded, or a line
        is not a rule; the message names the file (and the line).
    """
    name, text = read_text(path, ValueError, "refresh patterns file")
    # split("\n") rather than splitlines(), so line numbers agree with
    # editors even when a line holds a form feed.
    return parse_rule_lines(text.split("\n"), name)


class RefreshPatterns:
    """
    Fixed rules (from C{--refresh-pattern}) followed by those of a file
    (C{--refresh-patterns}), reloadable at once.  A reload that fails keeps
    the rules in force, so a typo on C{SIGHUP} never empties a package cache's
    rules.

    :ivar rules: the rules in force, fixed ones first.
    :ivar name: the file's path as text, or L{None}.
    """

    log = Logger()

    def __init__(self, fixed: Iterable[RefreshRule] = (), path: AnyPath | None = None) -> None:
        """
        Read the file now, so a bad one stops start-up.

        :param path: the file, or L{None} for none.
        :raises ValueError: when the file cannot be read or parsed.
        """
        self.fixed = tuple(fixed)
        self.path = path
        self.name = None if path is None else (path.asTextMode().path if isinstance(path, FilePath)
                                               else os.fsdecode(path))
        self.rules = self.fixed if path is None else self.fixed + read_rule_file(path)

    def reload(self) -> bool:
        """
        Re-read the file and put its rules in force, or keep the old ones
        when it cannot be read or parsed (logging why).

        :returns: C{True} when the new rules are in force (or there is no
            file), C{False} when the old ones were kept.
        """
        if self.path is None:
            return True
        try:
            loaded = read_rule_file(self.path)
        except ValueError as error:
            self.log.error("refused to reload the refresh patterns: {reason}; keeping the {count} rules in force",
                           reason=str(error), count=len(self.rules))
            return False
        # One assignment: a lookup never sees a half-built list.
        self.rules = self.fixed + loaded
        self.log.info("reloaded {count} refresh patterns from {path}", count=len(loaded), path=self.name)
        return True
