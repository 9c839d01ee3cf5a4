"""
The documents against the code: C{twistd netproxy ROLE --help} is the source
of truth for options, so every option of every role (and of every
C{netproxy-client} subcommand) must be described in C{docs/} with its help
text and default, and the documents may name no option a role does not have;
C{README.rst} must open with its two commands, unchanged.

The checks are plain functions of document text, so the tests below also
feed them synthetic documents and show that each drift is caught.
"""

import re
from pathlib import Path

from docutils import nodes
from docutils.core import publish_doctree
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.rst"

INSTALL_AND_RUN = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install . && twistd -n netproxy http")
INSTALL_AND_TEST = (
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' && python -m pytest")
README_MAX_LINES = 250

# Options every usage.Options has; the documents need not list them.
BUILT_IN = frozenset({"help", "version"})

_PROGRAM = re.compile(r"^\s*\.\. program:: *(.*?)\s*$")
_OPTION = re.compile(r"^(\s*)\.\. option:: *(.*?)\s*$")
# A command line: twistd (with its own options) then "netproxy ROLE", or
# "netproxy-client SUBCOMMAND"; an inline literal's backquotes end it.
_COMMAND = re.compile(r"(?:\btwistd(?:\s+[^\s`]+)*?\s+netproxy|(?<![\w.-])netproxy-client)\s+([a-z][\w-]*)\b([^`]*)")
_CUT = re.compile(r"&&|;|\s#")
_NAMED = re.compile(r"(?<![\w-])(--[A-Za-z][\w-]*|-[A-Za-z])\b")


def normalise(text):
    """
    :returns: C{text} with reST backslash escapes removed and every run of
        whitespace made one space, as C{--help} shows it once re-wrapped.
    """
    return " ".join(re.sub(r"\\(.)", r"\1", text).split())


def programs():
    """
    :returns: the program name each documented option list belongs to
        (C{"twistd netproxy http"}, C{"netproxy-client send"}) -> its
        L{usage.Options} class, for every role and client subcommand.
    """
    found = {}
    for role, _, options, _ in tap.Options.subCommands:
        found[f"twistd netproxy {role}"] = options
        for sub, _, sub_options, _ in getattr(options, "subCommands", ()):
            found[f"netproxy-client {sub}"] = sub_options
    return found


def expected_options(options_class):
    """
    :returns: long option name -> C{(short name or None, help text, default
        shown by --help or None)}, read from an L{usage.Options} class as
        C{--help} reads it.
    """
    options = options_class()
    shorts = {long: short for short, long in options.synonyms.items() if len(short) == 1}
    found = {}
    for spelled in options.longOpt:
        name = spelled.rstrip("=")
        if name in BUILT_IN:
            continue
        default = options.defaults.get(name) if spelled.endswith("=") else None
        found[name] = (shorts.get(name), normalise(options.docs.get(name) or ""),
                       None if default is None else str(default))
    return found


def documented_options(text):
    """
    Read the C{.. program::} and C{.. option::} directives of a reST text.

    :returns: C{(options, problems)}: program -> long option name ->
        C{(short name or None, normalised description)}, and the options
        documented before any program was named.
    """
    documented, problems = {}, []
    program = None
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = _PROGRAM.match(line)
        if match:
            program = " ".join(match.group(1).split())
            documented.setdefault(program, {})
            continue
        match = _OPTION.match(line)
        if not match:
            continue
        indent, spec = len(match.group(1)), match.group(2)
        body = []
        for following in lines[index + 1:]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        names = [part.split()[0].split("=")[0] for part in spec.split(", ") if part.strip()]
        longs = [name[2:] for name in names if name.startswith("--")]
        shorts = [name[1:] for name in names if not name.startswith("--")]
        if program is None:
            problems.append(f"{spec}: documented before any '.. program::'")
            continue
        for name in longs:
            documented[program][name] = (shorts[0] if shorts else None, normalise("\n".join(body)))
    return documented, problems


def option_problems(program, expected, documented):
    """
    :param expected: L{expected_options} of the program's class.
    :param documented: the program's entry of L{documented_options}.
    :returns: a sentence for each way the documented options differ from
        what C{--help} says.
    """
    problems = []
    for name, (short, help_text, default) in sorted(expected.items()):
        if name not in documented:
            problems.append(f"{program}: --{name} is not documented")
            continue
        documented_short, body = documented[name]
        if documented_short != short:
            problems.append(f"{program}: --{name} is documented with short option {documented_short!r}, "
                            f"--help says {short!r}")
        if help_text not in body:
            problems.append(f"{program}: --{name}'s description does not start from its help text {help_text!r}")
        if default is not None and f"Default: ``{default}``." not in body:
            problems.append(f"{program}: --{name}'s description does not say 'Default: ``{default}``.'")
    for name in sorted(set(documented) - set(expected)):
        problems.append(f"{program}: documents --{name}, which it does not have")
    return problems


def command_lines(text):
    """
    :returns: C{(program, option names)} for every C{twistd ... netproxy
        ROLE ...} and C{netproxy-client SUBCOMMAND ...} command in a text,
        lines ending in a backslash joined to the next.
    """
    found = []
    for line in text.replace("\\\n", " ").splitlines():
        for match in _COMMAND.finditer(line):
            role, rest = match.group(1), _CUT.split(match.group(2))[0]
            if match.group(0).startswith("netproxy-client"):
                program = f"netproxy-client {role}"
            elif role == "client" and re.match(r"\s+[a-z]", rest):
                sub, _, rest = rest.strip().partition(" ")
                program = f"netproxy-client {sub}"
            else:
                program = f"twistd netproxy {role}"
            found.append((program, _NAMED.findall(rest)))
    return found


def command_line_problems(text, known):
    """
    :param known: L{programs}.
    :returns: a sentence for each command in C{text} naming a role that does
        not exist, or an option its role does not have.
    """
    problems = []
    for program, names in command_lines(text):
        if program.split()[-1].isupper():
            continue  # a placeholder: "twistd netproxy ROLE --help"
        if program not in known:
            problems.append(f"{program}: no such role or client")
            continue
        options = known[program]()
        longs = {spelled.rstrip("=") for spelled in options.longOpt}
        shorts = {short for short in options.synonyms if len(short) == 1}
        for name in names:
            if (name[2:] not in longs) if name.startswith("--") else (name[1:] not in shorts):
                problems.append(f"{program}: a command line names {name}, which it does not have")
    return problems


def literal_blocks(text):
    """
    :returns: the text of every literal block of a reST document, in order.
    :raises docutils.utils.SystemMessage: for a warning or an error in it.
    """
    tree = publish_doctree(text, settings_overrides={"halt_level": 2, "report_level": 2, "warning_stream": False})
    return [block.astext() for block in tree.findall(nodes.literal_block)]


def docs_text():
    """
    :returns: path -> text of every reST document of C{docs/}.
    """
    return {path: path.read_text(encoding="utf-8") for path in sorted(DOCS.rglob("*.rst"))}


def all_documented_options():
    """
    :returns: L{documented_options} over all of C{docs/}, merged.
    """
    merged, problems = {}, []
    for path, text in docs_text().items():
        documented, found = documented_options(text)
        problems.extend(f"{path.relative_to(ROOT)}: {problem}" for problem in found)
        for program, options in documented.items():
            merged.setdefault(program, {}).update(options)
    return merged, problems


SYNTHETIC = """
.. program:: twistd netproxy ack

.. option:: --idle-timeout SECONDS

   seconds without traffic before a peer is disconnected

   Default: ``30``.

.. option:: -l ENDPOINT, --listen ENDPOINT

   endpoint to listen on (a bare port means 127.0.0.1)

   Default: ``tcp:8888:interface=127.0.0.1``.

.. option:: --max-connections COUNT

   most peers served at once; more are refused

   Default: ``1024``.

.. option:: --max-connections-per-client COUNT

   most peers served at once from one client address (every unix-socket
   peer is the one client 'unix'); default: a quarter of --max-connections

.. option:: -r TEXT, --reply TEXT

   the text answered to every chunk

   Default: ``DONE``.

.. option:: --shutdown-timeout SECONDS

   seconds work in flight may take to finish after
   SIGTERM

   Default: ``10``.
"""


class SyntheticDocumentTests(SynchronousTestCase):
    """
    The checks, run on a small document made here, catch each kind of drift.
    """

    def problems(self, text):
        documented, problems = documented_options(text)
        expected = expected_options(tap.AckOptions)
        return problems + option_problems("twistd netproxy ack", expected, documented.get("twistd netproxy ack", {}))

    def test_faithful_document_passes(self):
        """A document that lists the ack role's options as --help does has no problem."""
        self.assertEqual(self.problems(SYNTHETIC), [])

    def test_missing_option_is_caught(self):
        """An option of the role that the document leaves out is reported."""
        text = SYNTHETIC.replace(".. option:: -r TEXT, --reply TEXT", ".. note:: reply")
        self.assertEqual(self.problems(text), ["twistd netproxy ack: --reply is not documented"])

    def test_option_the_role_lacks_is_caught(self):
        """An option the document lists but the role does not have is reported."""
        text = SYNTHETIC + "\n.. option:: --banner TEXT\n\n   a banner\n"
        self.assertEqual(self.problems(text), ["twistd netproxy ack: documents --banner, which it does not have"])

    def test_changed_help_text_is_caught(self):
        """A description that no longer carries the option's help text is reported."""
        text = SYNTHETIC.replace("the text answered to every chunk", "the reply")
        self.assertEqual(len(self.problems(text)), 1)
        self.assertIn("--reply's description", self.problems(text)[0])

    def test_wrong_default_is_caught(self):
        """A description that gives another default than --help is reported."""
        text = SYNTHETIC.replace("Default: ``DONE``.", "Default: ``OK``.")
        self.assertEqual(self.problems(text),
                         ["twistd netproxy ack: --reply's description does not say 'Default: ``DONE``.'"])

    def test_wrong_short_option_is_caught(self):
        """A short option the role does not give the long one is reported."""
        text = SYNTHETIC.replace("-r TEXT, --reply TEXT", "--reply TEXT")
        self.assertEqual(self.problems(text),
                         ["twistd netproxy ack: --reply is documented with short option None, --help says 'r'"])

    def test_option_outside_a_program_is_caught(self):
        """An option directive before any program directive is reported, not silently dropped."""
        _, problems = documented_options(".. option:: --reply TEXT\n\n   the text\n")
        self.assertEqual(problems, ["--reply TEXT: documented before any '.. program::'"])

    def test_command_line_with_a_foreign_option_is_caught(self):
        """A command line giving a role an option of another role is reported."""
        text = "::\n\n    twistd -n netproxy ack --listen 8888 \\\n        --block 10.0.0.1 &\n"
        self.assertEqual(command_line_problems(text, programs()),
                         ["twistd netproxy ack: a command line names --block, which it does not have"])

    def test_command_line_of_a_client_under_twistd_is_checked(self):
        """A client run under twistd is checked against that client's options."""
        text = "``twistd -n netproxy client relay --to 127.0.0.1:8888 --udp``"
        self.assertEqual(command_line_problems(text, programs()),
                         ["netproxy-client relay: a command line names --udp, which it does not have"])

    def test_unknown_role_is_caught(self):
        """A command line naming a role that does not exist is reported."""
        self.assertEqual(command_line_problems("    twistd -n netproxy gopher --listen 70\n", programs()),
                         ["twistd netproxy gopher: no such role or client"])

    def test_changed_readme_command_is_caught(self):
        """A README whose first command changed no longer opens with the two commands."""
        readme = README.read_text(encoding="utf-8").replace("twistd -n netproxy http", "twistd netproxy http", 1)
        self.assertNotEqual(literal_blocks(readme)[:2], [INSTALL_AND_RUN, INSTALL_AND_TEST])


class DocsTests(SynchronousTestCase):
    """
    docs/ and README.rst agree with the code.
    """

    def test_every_role_has_a_reference(self):
        """Every role and client subcommand has a '.. program::' section in docs/."""
        documented, _ = all_documented_options()
        self.assertEqual(sorted(set(programs()) - set(documented)), [])

    def test_options_match_help(self):
        """Each role's options in docs/ are those of its --help, with their help texts and defaults."""
        documented, problems = all_documented_options()
        for program, options_class in programs().items():
            problems += option_problems(program, expected_options(options_class), documented.get(program, {}))
        for program in sorted(set(documented) - set(programs())):
            problems.append(f"{program}: documented, but there is no such role or client")
        self.assertEqual(problems, [])

    def test_command_lines_name_real_options(self):
        """Every command line in docs/ and README.rst names only options its role has."""
        problems = []
        for path, text in [*docs_text().items(), (README, README.read_text(encoding="utf-8"))]:
            problems += [f"{path.relative_to(ROOT)}: {problem}" for problem in command_line_problems(text, programs())]
        self.assertEqual(problems, [])

    def test_command_lines_are_found(self):
        """The command-line scan sees the role tours, so a passing check means something."""
        seen = {program for program, _ in command_lines(README.read_text(encoding="utf-8"))}
        self.assertTrue({"twistd netproxy http", "twistd netproxy reverse", "twistd netproxy relay",
                         "netproxy-client send", "netproxy-client upper"} <= seen, seen)

    def test_readme_opens_with_its_two_commands(self):
        """README.rst's first two literal blocks are the install-and-run and the test commands, unchanged."""
        self.assertEqual(literal_blocks(README.read_text(encoding="utf-8"))[:2], [INSTALL_AND_RUN, INSTALL_AND_TEST])

    def test_readme_is_short(self):
        """README.rst stays a front door, with the reference in docs/."""
        self.assertLessEqual(len(README.read_text(encoding="utf-8").splitlines()), README_MAX_LINES)

    def test_readme_links_exist(self):
        """Every docs/ page README.rst links to exists."""
        links = re.findall(r"<(docs/[^>]+)>`_", README.read_text(encoding="utf-8"))
        self.assertTrue(links)
        self.assertEqual([link for link in links if not (ROOT / link).is_file()], [])

    def test_help_is_the_source(self):
        """The help texts the checks compare with are those twistd prints."""
        help_text = " ".join(str(tap.AckOptions()).split())
        for name, (_, text, default) in expected_options(tap.AckOptions).items():
            self.assertIn(f"--{name}", help_text)
            self.assertIn(text, help_text)
            if default is not None:
                self.assertIn(f"[default: {default}]", help_text)
