"""
netproxy's twistd plugin is found after a normal and after an editable
install, and its C{netproxy-client} command runs from the installed copy.

Each test installs a copy of the project into a fresh virtualenv, offline:
the new environment (made without pip) borrows pip, setuptools and Twisted from the one running the
tests through a C{.pth} line, and pip builds without isolation or an index.
"""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

from twisted.trial.unittest import TestCase

PROJECT = Path(__file__).resolve().parents[2]
TWISTD_HELP = "import sys; sys.argv = ['twistd', '--help']; from twisted.scripts.twistd import run; run()"
PLUGIN_FILE = "import twisted.plugins.netproxy_plugin as plugin; print(plugin.__file__)"


def _run(argv, cwd):
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "PIP_"))}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


class PluginDiscoveryTests(TestCase):
    """
    What C{pip install} leaves in a fresh virtualenv.
    """

    def setUp(self):
        self.base = Path(self.mktemp()).resolve()
        self.source = self.base / "netproxy-src"
        self.source.mkdir(parents=True)
        for name in ("setup.cfg", "pyproject.toml", "README.rst"):
            shutil.copy(PROJECT / name, self.source / name)
        for name in ("netproxy", "twisted"):
            shutil.copytree(PROJECT / name, self.source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "dropin.cache"))
        self.venv = self.base / "venv"
        created = _run([sys.executable, "-m", "venv", "--without-pip", str(self.venv)], self.base)
        self.assertEqual(created.returncode, 0, created.stderr)
        self.python = str(self.venv / "bin" / "python")
        purelib = _run([self.python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], self.base)
        borrowed = [sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()]
        Path(purelib.stdout.strip(), "borrowed.pth").write_text("\n".join(dict.fromkeys(borrowed)) + "\n")
        self.elsewhere = self.base / "elsewhere"
        self.elsewhere.mkdir()

    def install(self, *flags):
        result = _run([self.python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                       *flags, str(self.source)], self.base)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def assert_listed(self):
        result = _run([self.python, "-c", TWISTD_HELP], self.elsewhere)
        self.assertIn("netproxy", result.stdout, result.stdout + result.stderr)
        return Path(_run([self.python, "-c", PLUGIN_FILE], self.elsewhere).stdout.strip())

    def test_normal_install(self):
        """After pip install, twistd --help lists netproxy, from the installed plugin file."""
        self.install()
        plugin = self.assert_listed()
        self.assertTrue(plugin.is_relative_to(self.venv), plugin)

    def test_normal_install_has_every_package(self):
        """After pip install, every package of the source tree imports from the installed copy."""
        self.install()
        packages = sorted(".".join(init.parent.relative_to(PROJECT).parts)
                          for init in (PROJECT / "netproxy").rglob("__init__.py"))
        self.assertIn("netproxy.http", packages)
        code = ("import importlib, sys; "
                f"print(all(importlib.import_module(name).__file__.startswith(sys.prefix) for name in {packages!r}))")
        result = _run([self.python, "-c", code], self.elsewhere)
        self.assertEqual(result.stdout.strip(), "True", result.stdout + result.stderr)

    def test_client_script(self):
        """After pip install, the netproxy-client script runs from the installed copy and offers fetch."""
        self.install()
        script = self.venv / "bin" / "netproxy-client"
        result = _run([str(script), "fetch", "--help"], self.elsewhere)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("Cache-Status", result.stdout)
        code = "import netproxy.cli, sys; print(netproxy.cli.__file__.startswith(sys.prefix))"
        result = _run([self.python, "-c", code], self.elsewhere)
        self.assertEqual(result.stdout.strip(), "True", result.stdout + result.stderr)

    def test_editable_install(self):
        """After pip install -e, twistd --help lists netproxy, from the project's own plugin file."""
        self.install("-e")
        plugin = self.assert_listed()
        self.assertEqual(plugin, self.source / "twisted" / "plugins" / "netproxy_plugin.py")
