"""
Tests for L{netproxy.processes}.
"""

import os
import subprocess

from twisted.trial.unittest import SynchronousTestCase

from netproxy.processes import running


class RunningTests(SynchronousTestCase):
    """L{running} tells live processes from dead and zombie ones."""

    def test_self(self):
        """This process is running."""
        self.assertTrue(running(os.getpid()))

    def test_exited(self):
        """A process that exited and was reaped is not."""
        process = subprocess.Popen(["true"])
        process.wait()
        self.assertFalse(running(process.pid))

    def test_zombie(self):
        """A process that exited but was not reaped yet (a zombie) is not."""
        process = subprocess.Popen(["true"])
        self.addCleanup(process.wait)
        # Waits for the exit without reaping it.
        os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)
        self.assertFalse(running(process.pid))

    def test_live_child(self):
        """A child still running is running."""
        process = subprocess.Popen(["sleep", "30"])
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        self.assertTrue(running(process.pid))
