"""
Fuzz tests: property-based tests (hypothesis) that drive the real protocol
classes over in-memory transports with arbitrary and mutated bytes, and
check that every input ends in a parsed message or the role's documented
error, with nothing in the log but warnings and no connection left open
without a timer.

The hypothesis settings live here, in one place, as two profiles: the
C{netproxy-fuzz-ci} profile (the default: few enough examples that the whole
set runs in seconds, no deadline, since a loaded CI machine is slow at
random) and C{netproxy-fuzz-long}, for running longer by hand.  The
environment variable C{NETPROXY_FUZZ} chooses: C{ci} (or unset), C{long}, or
a number of examples per test.  The profiles are applied with the L{fuzz}
decorator, never loaded globally, so the other hypothesis tests of the suite
keep their own settings.
"""

import os

from hypothesis import HealthCheck, settings

CI_EXAMPLES = 120
LONG_EXAMPLES = 5000

_COMMON = dict(
    deadline=None,
    # A failure prints the blob that replays it (@reproduce_failure).
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# No example database in CI: nothing is written into the working copy, and
# each run tries fresh inputs.
settings.register_profile("netproxy-fuzz-ci", max_examples=CI_EXAMPLES, database=None, **_COMMON)
settings.register_profile("netproxy-fuzz-long", max_examples=LONG_EXAMPLES, **_COMMON)


def profile(choice=None):
    """
    :param choice: the value of C{NETPROXY_FUZZ} (read from the
        environment when L{None}): C{ci} or empty, C{long}, or a positive
        number of examples per test.
    :returns: the hypothesis L{settings} the fuzz tests run with.
    :raises ValueError: for any other value.
    """
    choice = os.environ.get("NETPROXY_FUZZ", "") if choice is None else choice
    choice = choice.strip().lower()
    if choice in ("", "ci"):
        return settings.get_profile("netproxy-fuzz-ci")
    if choice == "long":
        return settings.get_profile("netproxy-fuzz-long")
    if choice.isdigit() and int(choice) > 0:
        return settings(settings.get_profile("netproxy-fuzz-long"), max_examples=int(choice))
    raise ValueError(f"NETPROXY_FUZZ: expected ci, long or a number of examples, got {choice!r}")


def fuzz(scale=1.0):
    """
    The settings decorator of a fuzz test.

    :param scale: how many examples this test runs, relative to the
        profile's (a test whose examples cost more runs fewer of them).
    """
    chosen = profile()
    return settings(chosen, max_examples=max(1, round(chosen.max_examples * scale)))
