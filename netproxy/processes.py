# -*- test-case-name: tests.test_processes -*-
"""
Whether a process is still running, for files and leases named after the
process that made them, which another process sharing a directory may
clean up once their owner is gone.
"""

import os


def running(pid: int) -> bool:
    """
    :returns: whether the process C{pid} is running.  A zombie (dead, not
        yet reaped: the orphan of a killed main process, in a container
        whose first process reaps nothing) is not.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's: running
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The state follows the command name, which is in parentheses.
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):
        return True
