# -*- test-case-name: tests.test_rules_file -*-
"""
Rules files: a blocklist or allow-list read from disk, and reloaded on
``SIGHUP`` without ever leaving a half-read list in force.
"""

import os

from twisted.python.filepath import FilePath

from netproxy.acl import Rule, RuleSet
from netproxy.errors import RuleError
from netproxy.escaping import Logger
from netproxy.textfile import AnyPath, read_text


def _as_filepath(path: AnyPath) -> "FilePath[str]":
    if isinstance(path, FilePath):
        return path.asTextMode()
    return FilePath(os.fsdecode(path))


def read_rules_file(path: AnyPath) -> RuleSet:
    """
    Read a rules file: UTF-8 text, one rule per line, ``#`` comments.

    :param path: A :class:`FilePath`, or a path as ``str`` or ``os.PathLike``.
    :returns: The file's rules.
    :raises RuleError: If the file cannot be read or decoded, or a line is not
        a rule; the message names the file (and the line).
    """
    name, text = read_text(path, RuleError, "rules file")
    # split("\n") rather than splitlines() so line numbers agree with editors
    # even when a line holds a form feed or other Unicode line break.
    return RuleSet.from_lines(text.split("\n"), source=name)


class RulesFile:
    """
    The rules of a file plus fixed rules (from ``--block`` options),
    reloadable atomically.  The fixed rules come first.  A reload that fails
    keeps the rules in force, so a typo on ``SIGHUP`` never opens the gates.
    """

    log = Logger()

    def __init__(self, fixed: RuleSet = RuleSet(),
                 path: AnyPath | None = None) -> None:
        """
        Read the file now, so a bad file stops start-up with a clear message.

        :param fixed: Rules always in force, before the file's.
        :param path: The rules file (:class:`FilePath`, ``str`` or ``os.PathLike``),
            or ``None`` for none.
        :raises RuleError: If the file cannot be read or parsed.
        """
        self.fixed = fixed
        self.path = None if path is None else _as_filepath(path)
        self._rules = fixed if self.path is None else fixed + read_rules_file(self.path)

    @property
    def rules(self) -> RuleSet:
        """The fixed rules followed by the file's, as currently in force."""
        return self._rules

    def match(self, host: str, port: int | None = None) -> Rule | None:
        """Find the first rule in force matching a destination; see :meth:`RuleSet.match`."""
        return self._rules.match(host, port)

    def reload(self) -> bool:
        """
        Re-read the file and put its rules in force, or keep the old ones if
        it cannot be read or parsed (logging why).

        :returns: ``True`` if the new rules are in force (or there is no file),
            ``False`` if the old ones were kept.
        """
        if self.path is None:
            return True
        try:
            loaded = read_rules_file(self.path)
        except RuleError as e:
            self.log.error(
                "refused to reload {path}: {reason}; keeping the {count} rules in force",
                path=self.path.path,
                reason=str(e),
                count=len(self._rules),
            )
            return False
        # One assignment, so a match never sees a half-built list.
        self._rules = self.fixed + loaded
        self.log.info("reloaded {count} rules from {path}", count=len(loaded), path=self.path.path)
        return True
