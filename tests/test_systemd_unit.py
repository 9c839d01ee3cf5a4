"""
Tests for contrib/systemd: the unit starts twistd in the foreground,
restarts on failure and runs unprivileged.
"""

import configparser
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from netproxy import tap
from netproxy.connections import DEFAULT_MAX_CONNECTIONS
from netproxy.descriptors import descriptors_needed

UNIT = Path(__file__).resolve().parents[1] / "contrib" / "systemd" / "netproxy@.service"
HTTP_UNIT = UNIT.with_name("netproxy-http.service")


def read_unit(path):
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


class TemplateUnitTests(SynchronousTestCase):
    def setUp(self):
        self.unit = read_unit(UNIT)

    def test_exec_start_runs_twistd_in_foreground(self):
        """ExecStart runs twistd --nodaemon with no pidfile, the role taken from the instance name."""
        argv = self.unit["Service"]["ExecStart"].split()
        self.assertTrue(argv[0].endswith("/twistd"))
        self.assertEqual(argv[1:5], ["--nodaemon", "--pidfile=", "netproxy", "%i"])

    def test_restarts_on_failure(self):
        """A role that dies is restarted."""
        self.assertEqual(self.unit["Service"]["Restart"], "on-failure")

    def test_unprivileged(self):
        """The service runs as a dynamic user that cannot gain privileges."""
        service = self.unit["Service"]
        self.assertEqual(service["DynamicUser"], "yes")
        self.assertEqual(service["NoNewPrivileges"], "yes")
        self.assertNotIn("User", service)

    def test_cache_directory(self):
        """systemd makes a cache directory per role, which the HTTP proxy finds in $CACHE_DIRECTORY."""
        self.assertEqual(self.unit["Service"]["CacheDirectory"], "netproxy/%i")

    def test_reload_is_sighup(self):
        """systemctl reload sends SIGHUP, which re-reads blocklists."""
        self.assertIn("-HUP", self.unit["Service"]["ExecReload"])

    def test_open_files(self):
        """Both units leave the soft open-file limit at 1024 and allow a hard limit netproxy raises it towards."""
        needed = descriptors_needed(DEFAULT_MAX_CONNECTIONS, tap.HttpOptions.descriptors_per_connection,
                                    tap.HttpOptions.descriptors_fixed)
        for path in (UNIT, HTTP_UNIT):
            soft, hard = read_unit(path)["Service"]["LimitNOFILE"].split(":")
            self.assertEqual(int(soft), 1024)
            self.assertGreaterEqual(int(hard), 10 * needed)
