"""
Tests for L{netproxy.worker_options}: C{--workers}, and what the main
process hands a worker in its environment.
"""

import json
import os
from unittest import mock

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.worker_options import (
    MAX_WORKERS,
    WORKER_VARIABLE,
    Worker,
    check_shareable,
    usable_cpus,
    worker_count,
    worker_from_environ,
)


def parse(options_class, *args, environ=None):
    """
    :returns: the role options parsed from C{args} with C{environ} as the
        process environment (none of the test runner's own worker variable).
    """
    options = options_class()
    environment = {name: value for name, value in os.environ.items() if name != WORKER_VARIABLE}
    environment.update(environ or {})
    with mock.patch.dict(os.environ, environment, clear=True):
        options.parseOptions(list(args))
    return options


WORKER = Worker(1, 2, ((4, "INET"), (5, "INET6")), (0, 3), "/run/netproxy-workers-test")


class WorkerCountTests(SynchronousTestCase):
    """
    C{--workers} takes a small whole number or C{auto}.
    """

    def test_numbers(self):
        """
        1, 2 and the largest allowed are taken as they are.
        """
        self.assertEqual([worker_count("workers", text) for text in ("1", "2", str(MAX_WORKERS), " 3 ")],
                         [1, 2, MAX_WORKERS, 3])

    def test_auto(self):
        """
        auto is the number of CPUs the process may use, at most the largest allowed.
        """
        self.assertEqual(worker_count("workers", "auto", cpus=6), 6)
        self.assertEqual(worker_count("workers", "auto", cpus=10 * MAX_WORKERS), MAX_WORKERS)
        self.assertEqual(worker_count("workers", "auto"), min(MAX_WORKERS, usable_cpus()))
        self.assertGreaterEqual(usable_cpus(), 1)

    def test_refused(self):
        """
        Zero, negatives, fractions, absurd counts, non-ASCII digits and words are usage errors naming the option and the value.
        """
        for text in ("0", "-1", "1.5", str(MAX_WORKERS + 1), "100000000000000000000", "\u0662", "", "many", "AUTO"):
            error = self.assertRaises(usage.UsageError, worker_count, "workers", text)
            self.assertIn("--workers: expected a number of processes from 1 to", str(error))
            self.assertIn(repr(text), str(error))


class ShareableTests(SynchronousTestCase):
    """
    Several workers share TCP listeners only.
    """

    def test_tcp(self):
        """
        tcp: and tcp6: listeners can be shared.
        """
        check_shareable("listen", "tcp:8080:interface=127.0.0.1")
        check_shareable("listen", "tcp6:8080:interface=\\:\\:1")

    def test_behind_haproxy(self):
        """
        A haproxy: listener is shared as the socket under it is: TCP yes, unix no.
        """
        check_shareable("listen", "haproxy:tcp:8081:interface=127.0.0.1")
        error = self.assertRaises(usage.UsageError, check_shareable, "listen", "haproxy:unix:/tmp/proxy.sock")
        self.assertIn("haproxy:unix:/tmp/proxy.sock", str(error))

    def test_unix(self):
        """
        A unix: listener cannot: the error names the option and the value.
        """
        error = self.assertRaises(usage.UsageError, check_shareable, "listen", "unix:/tmp/proxy.sock")
        self.assertIn("--listen: with --workers above 1, listeners must be TCP", str(error))
        self.assertIn("unix:/tmp/proxy.sock", str(error))


class EnvironmentTests(SynchronousTestCase):
    """
    The main process describes a worker in L{WORKER_VARIABLE}; anything else there is refused.
    """

    def test_round_trip(self):
        """
        What to_environ writes, worker_from_environ reads back.
        """
        self.assertEqual(worker_from_environ({WORKER_VARIABLE: WORKER.to_environ()}), WORKER)

    def test_unset(self):
        """
        Without the variable the process is no worker.
        """
        self.assertIsNone(worker_from_environ({}))

    def test_malformed(self):
        """
        Values no main process writes are usage errors that say to unset the variable.
        """
        good = json.loads(WORKER.to_environ())
        bad = ["", "1", "[]", "{", json.dumps({**good, "index": 2}), json.dumps({**good, "index": -1}),
               json.dumps({**good, "count": MAX_WORKERS + 1, "index": 0}), json.dumps({**good, "index": True}),
               json.dumps({**good, "listening": []}), json.dumps({**good, "listening": [[4, "UNIX"]]}),
               json.dumps({**good, "listening": [[-1, "INET"]]}), json.dumps({**good, "listening": [["4", "INET"]]}),
               json.dumps({**good, "control": [0]}), json.dumps({**good, "control": [0, 1 << 40]}),
               json.dumps({key: value for key, value in good.items() if key != "control"}),
               json.dumps({**good, "state": "relative/dir"}), json.dumps({**good, "state": 7}),
               json.dumps({key: value for key, value in good.items() if key != "state"})]
        for text in bad:
            error = self.assertRaises(usage.UsageError, worker_from_environ, {WORKER_VARIABLE: text})
            self.assertIn(f"${WORKER_VARIABLE} is set only by netproxy's main process", str(error))


class RoleOptionsTests(SynchronousTestCase):
    """
    The http and relay roles take --workers; a worker's options carry its place.
    """

    def test_default_one(self):
        """
        Without --workers a role runs in one process, and is no worker.
        """
        for options_class in (tap.HttpOptions, tap.RelayOptions):
            options = parse(options_class)
            self.assertEqual((options["workers"], options["worker"]), (1, None))

    def test_workers(self):
        """
        --workers 2 is parsed for both roles.
        """
        self.assertEqual(parse(tap.HttpOptions, "--workers", "2")["workers"], 2)
        self.assertEqual(parse(tap.RelayOptions, "--workers", "auto")["workers"], min(MAX_WORKERS, usable_cpus()))

    def test_bad_workers(self):
        """
        --workers 0 stops option parsing with the usage error.
        """
        error = self.assertRaises(usage.UsageError, parse, tap.HttpOptions, "--workers", "0")
        self.assertIn("--workers: expected a number", str(error))

    def test_unix_listen_with_workers(self):
        """
        A unix: --listen with --workers 2 is refused; with one process it is taken.
        """
        self.assertRaises(usage.UsageError, parse, tap.HttpOptions, "--workers", "2", "--listen", "unix:/tmp/p.sock")
        self.assertEqual(parse(tap.HttpOptions, "--listen", "unix:/tmp/p.sock")["listen"], ["unix:/tmp/p.sock"])

    def test_bad_listen_still_refused(self):
        """
        A --listen that is no endpoint is still a usage error naming it.
        """
        error = self.assertRaises(usage.UsageError, parse, tap.HttpOptions, "--listen", "nonsense:1")
        self.assertIn("--listen: not an endpoint", str(error))

    def test_worker_place(self):
        """
        In a worker, options["worker"] is its place, and --listen values (a systemd socket it was not given) are not checked.
        """
        options = parse(tap.RelayOptions, "--workers", "2", "--listen", "systemd:domain=INET:index=0",
                        environ={WORKER_VARIABLE: WORKER.to_environ()})
        self.assertEqual(options["worker"], WORKER)
        self.assertEqual(options["listen"], "systemd:domain=INET:index=0")

    def test_hand_set_variable(self):
        """
        A garbage worker variable stops start-up with a usage error.
        """
        self.assertRaises(usage.UsageError, parse, tap.HttpOptions, environ={WORKER_VARIABLE: "garbage"})
