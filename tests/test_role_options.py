"""
Tests for L{netproxy.role_options}: the options every listening role
shares, and fitting C{--max-connections} to the open-file limit.
"""

from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from netproxy.role_options import AccessOptions, ListeningOptions


class FakeLimit:
    """
    A stand-in for L{netproxy.descriptors.DescriptorLimit} that holds at
    most C{holds} connections and records what it was asked.
    """

    def __init__(self, holds):
        self.holds = holds
        self.asked = []

    def fit(self, connections, per_connection, fixed=0):
        self.asked.append((connections, per_connection, fixed))
        return min(connections, self.holds)


def parse(*argv):
    options = ListeningOptions()
    options.parseOptions(list(argv))
    return options


class ListeningOptionsTests(SynchronousTestCase):
    """
    L{ListeningOptions} checks the shared limits.
    """

    def test_defaults(self):
        """Idle 30 s, 1024 connections, no per-client value (a quarter is taken), 10 s to shut down."""
        options = parse()
        self.assertEqual((options["idle-timeout"], options["max-connections"], options["max-connections-per-client"],
                          options["shutdown-timeout"]), (30.0, 1024, None, 10.0))

    def test_per_client(self):
        """--max-connections-per-client takes a whole number of at least 1, naming itself when it is bad."""
        self.assertEqual(parse("--max-connections-per-client", "40")["max-connections-per-client"], 40)
        for bad in ("0", "-1", "many"):
            error = self.assertRaises(UsageError, parse, "--max-connections-per-client", bad)
            self.assertTrue(str(error).startswith("--max-connections-per-client:"), str(error))


class FitDescriptorsTests(SynchronousTestCase):
    """
    L{ListeningOptions.fit_descriptors} asks the limit for the role's
    connections and keeps what it holds.
    """

    def test_holds(self):
        """A limit that holds the connections leaves --max-connections as it was."""
        options = parse("--max-connections", "5000")
        limit = FakeLimit(10000)
        options.fit_descriptors(limit)
        self.assertEqual(options["max-connections"], 5000)
        self.assertEqual(limit.asked, [(5000, 1, 0)])

    def test_lowered(self):
        """A limit that holds fewer lowers --max-connections to them."""
        options = parse("--max-connections", "5000")
        options.fit_descriptors(FakeLimit(286))
        self.assertEqual(options["max-connections"], 286)

    def test_role_costs(self):
        """A role's descriptors per connection and fixed ones are what the limit is asked for."""

        class Role(ListeningOptions):
            descriptors_per_connection = 3
            descriptors_fixed = 1024

        options = Role()
        options.parseOptions([])
        limit = FakeLimit(10000)
        options.fit_descriptors(limit)
        self.assertEqual(limit.asked, [(1024, 3, 1024)])


class AccessOptionsTests(SynchronousTestCase):
    """
    L{AccessOptions} reads the repeatable access rules of every proxy role.
    """

    def test_empty_lists(self):
        """Without the options the lists are empty, for the role to fill with its defaults."""
        options = AccessOptions()
        options.parseOptions([])
        self.assertEqual((options["listen"], options["allow"], options["block"]), ([], [], []))

    def test_rules_repeat(self):
        """Each --allow and --block adds a rule, in order."""
        options = AccessOptions()
        options.parseOptions(["--allow", "10.0.0.0/8", "--allow", "unix", "--block", "*:25", "--block", "example.com"])
        self.assertEqual(len(options["allow"]), 2)
        self.assertEqual(len(options["block"]), 2)

    def test_bad_rule(self):
        """A rule that cannot be read stops parsing with an error naming the option."""
        for option in ("allow", "block"):
            with self.subTest(option=option):
                error = self.assertRaises(UsageError, AccessOptions().parseOptions, [f"--{option}", "10.0.0.0/99"])
                self.assertIn(f"--{option}", str(error))

    def test_lists_per_instance(self):
        """Two parsers do not share their lists."""
        first, second = AccessOptions(), AccessOptions()
        first.parseOptions(["--allow", "10.0.0.0/8"])
        second.parseOptions([])
        self.assertEqual(second["allow"], [])
