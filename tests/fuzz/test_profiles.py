"""
Tests for the fuzz tests' settings (L{tests.fuzz.profile}): which profile
C{NETPROXY_FUZZ} selects.
"""

from twisted.trial.unittest import SynchronousTestCase

from tests.fuzz import CI_EXAMPLES, LONG_EXAMPLES, fuzz, profile


class ProfileTests(SynchronousTestCase):
    """
    C{NETPROXY_FUZZ} chooses how long the fuzz tests run.
    """

    def test_default_is_ci(self):
        """Unset or ci: the CI profile, bounded, with no deadline and no example database."""
        for choice in ("", "ci", " CI "):
            chosen = profile(choice)
            self.assertEqual((chosen.max_examples, chosen.deadline, chosen.database), (CI_EXAMPLES, None, None))

    def test_long(self):
        """long: the long profile."""
        self.assertEqual(profile("long").max_examples, LONG_EXAMPLES)

    def test_number(self):
        """A number: that many examples per test."""
        self.assertEqual(profile("123").max_examples, 123)

    def test_bad_value(self):
        """Anything else is refused, naming the variable and the value."""
        for choice in ("forever", "0", "-5"):
            error = self.assertRaises(ValueError, profile, choice)
            self.assertIn("NETPROXY_FUZZ", str(error))
            self.assertIn(repr(choice), str(error))

    def test_scale(self):
        """A test's scale multiplies the profile's examples, keeping at least one."""
        self.assertEqual(fuzz(0.5).max_examples, max(1, round(profile().max_examples * 0.5)))
        self.assertEqual(fuzz(0.0).max_examples, 1)
