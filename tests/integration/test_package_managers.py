"""
Real package managers through a real C{twistd netproxy http} with the
shipped freshness rules (C{contrib/refresh-patterns/packages.conf}), in front
of a local mirror that sends what many mirrors send: no C{Last-Modified}, no
C{ETag}, no C{Cache-Control}.  Each fetches the same package twice; the
second time it comes from the cache, the mirror asked once.

Everything stays on this host: pip is given only the local index and is kept
from every configuration file and environment variable of its own; apt
works in a private directory tree, with the local repository as its only
source.
"""

import email.utils
import hashlib
import importlib.util
import io
import os
import pwd
import re
import shutil
import sys
import zipfile
from pathlib import Path

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest
from twisted.web.resource import Resource

from tests.integration.daemon import LOCALHOST, fresh_directory, run_command
from tests.integration.http_client import CacheTestCase
from tests.integration.http_origin import Page, add_page, start_origin

ROOT = Path(__file__).resolve().parent.parent.parent
SHIPPED = ["--refresh-patterns", str(ROOT / "contrib" / "refresh-patterns" / "packages.conf")]

# A package manager on a loaded machine takes seconds to start.
PACKAGE_MANAGER_TIMEOUT = 180

# Variables by which the environment could send a client elsewhere than
# where the test points it.
_STEERING = ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
             "NO_PROXY")

NAME, VERSION = "netproxy-probe", "1.0"
WHEEL = f"netproxy_probe-{VERSION}-py3-none-any.whl"


def wheel_bytes():
    """
    :returns: a small valid wheel of C{netproxy-probe 1.0}: a module and the
        C{.dist-info} pip reads (metadata, wheel tags, record).
    """
    info = f"netproxy_probe-{VERSION}.dist-info"
    files = {
        "netproxy_probe.py": b'"""Probe."""\n' + b"# padding\n" * 2000,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode("ascii"),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: netproxy-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in [*files, f"{info}/RECORD"]).encode("ascii")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in [*files.items(), (f"{info}/RECORD", record)]:
            archive.writestr(name, content)
    return buffer.getvalue()


def served_line(url):
    """
    :returns: a regular expression for the proxy's access line of a GET of
        C{url} answered 200, its cache column as group 1 (clients' own
        C{User-Agent}s may hold escaped quotes, so the line's middle is
        skipped).
    """
    return rf'"GET {re.escape(url)} HTTP/1\.[01]" 200 \d+ .* (\S+) \d+\.\d+$'


def clean_environment(*assignments):
    """
    :returns: the start of a command line (C{env ...}) removing the
        variables that could steer a client elsewhere, and setting
        C{assignments} (C{NAME=value}).
    """
    unset = [word for name in _STEERING for word in ("-u", name)]
    return ["env", *unset, *assignments]


class PipTests(CacheTestCase):
    """
    pip downloads a wheel twice through the proxy; the second time from the cache.
    """

    def setUp(self):
        if importlib.util.find_spec("pip") is None:
            raise SkipTest(f"pip is not installed for {sys.executable}")

    def pip_download(self, proxy, index, target):
        """
        Run C{pip download} of the probe package from C{index} through
        C{proxy} into C{target}.

        :returns: a coroutine returning the L{tests.integration.daemon.Result}.
        """
        return run_command([
            *clean_environment("PIP_CONFIG_FILE=" + os.devnull),
            sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "--no-input",
            "download", "--no-deps", "--no-cache-dir", "--only-binary", ":all:",
            "--index-url", index, "--proxy", f"http://{LOCALHOST}:{proxy.port}",
            "--timeout", "60", "--retries", "0", "--dest", target, f"{NAME}=={VERSION}",
        ], timeout=PACKAGE_MANAGER_TIMEOUT)

    async def test_wheel_twice(self):
        """The wheel is fetched from the mirror once: the second pip run is a cache hit."""
        origin = start_origin(self)
        wheel = Page(body=wheel_bytes())
        wheel_url = add_page(origin, "files", wheel) + "/" + WHEEL
        digest = hashlib.sha256(wheel.body).hexdigest()
        listing = (f'<!DOCTYPE html><html><body><a href="{wheel_url}#sha256={digest}">{WHEEL}</a>'
                   f"</body></html>\n").encode("ascii")
        index = Page((b"Content-Type", b"text/html; charset=utf-8"), body=listing)
        index_url = add_page(origin, "simple", index) + "/"
        proxy = await self.cached_proxy(*SHIPPED)
        columns = []
        for number in range(2):
            target = FilePath(fresh_directory(self))
            since = proxy.mark()
            result = await self.pip_download(proxy, index_url, target.path)
            self.assertEqual(result.code, 0, f"{result}\n{proxy.output.transcript()}")
            self.assertEqual(target.child(WHEEL).getContent(), wheel.body)
            line = await proxy.wait_for(served_line(wheel_url), since)
            columns.append(line.group(1))
        self.assertEqual(columns, ["MISS", "HIT"], proxy.output.transcript())
        self.assertEqual(len(wheel.seen), 1)
        # The index page has no rule of its own (it changes in place): both
        # runs asked the mirror for it, through the proxy.
        self.assertEqual([seen.uri for seen in index.seen], [f"/simple/{NAME}/"] * 2)


class Files(Resource):
    """
    A mirror's directory: each known path answered 200 with its bytes and
    no other field, as a plain mirror sends them; anything else 404.

    :ivar files: the bytes of each path below this resource (C{"a/b"}).
    :ivar seen: the paths asked for, in order.
    """

    isLeaf = True

    def __init__(self, files):
        super().__init__()
        self.files = files
        self.seen = []

    def render_GET(self, request):
        # A flat repository's files are asked for as "/debian/./Packages".
        path = b"/".join(part for part in request.postpath if part not in (b"", b".")).decode("latin-1")
        self.seen.append(path)
        if path not in self.files:
            request.setResponseCode(404)
            return b"not here\n"
        request.setHeader(b"Content-Type", b"application/octet-stream")
        return self.files[path]


class AptTests(CacheTestCase):
    """
    apt, as two machines behind one proxy, downloads a .deb twice; the second time from the cache.
    """

    def setUp(self):
        self.apt_get_path = shutil.which("apt-get")
        self.dpkg_deb = shutil.which("dpkg-deb")
        if self.apt_get_path is None or self.dpkg_deb is None:
            raise SkipTest("apt-get and dpkg-deb are not installed")

    async def build_deb(self):
        """
        :returns: the bytes of a small real .deb, built by C{dpkg-deb}.
        """
        root = FilePath(fresh_directory(self))
        control = root.child("tree").child("DEBIAN")
        control.makedirs()
        control.child("control").setContent(
            b"Package: netproxy-probe\nVersion: 1.0\nArchitecture: all\n"
            b"Maintainer: netproxy tests <tests@example.invalid>\nDescription: probe\n")
        data = root.child("tree").child("usr").child("share").child("netproxy-probe")
        data.makedirs()
        data.child("README").setContent(b"probe\n" * 2000)
        output = root.child("probe.deb")
        result = await run_command([self.dpkg_deb, "--root-owner-group", "--build", root.child("tree").path,
                                    output.path], timeout=PACKAGE_MANAGER_TIMEOUT)
        self.assertEqual(result.code, 0, result)
        return output.getContent()

    def repository(self, deb):
        """
        :returns: the files of a flat repository holding C{deb} under
            C{pool/}: its C{Packages} index and an unsigned C{Release}.
        """
        pool = "pool/main/n/netproxy-probe/netproxy-probe_1.0_all.deb"
        packages = (f"Package: netproxy-probe\nVersion: 1.0\nArchitecture: all\n"
                    f"Maintainer: netproxy tests <tests@example.invalid>\nFilename: {pool}\nSize: {len(deb)}\n"
                    f"SHA256: {hashlib.sha256(deb).hexdigest()}\nDescription: probe\n\n").encode("ascii")
        # A Date in the past: apt refuses a Release file "not valid yet".
        date = email.utils.formatdate(0, usegmt=True)
        release = (f"Origin: netproxy-tests\nLabel: netproxy-tests\nSuite: stable\nDate: {date}\nSHA256:\n"
                   f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n").encode("ascii")
        return pool, {"Release": release, "Packages": packages, pool: deb}

    def apt_config(self, proxy, mirror):
        """
        Write a private apt tree: configuration (read in place of the
        system's, whose parts directory is replaced by an empty one),
        sources, state and cache, so that nothing of the system's apt is
        read or changed.

        :returns: the path of the configuration file, for C{APT_CONFIG}.
        """
        root = FilePath(fresh_directory(self))
        for path in ("parts", "preferences.d", "trusted.gpg.d", "sources.list.d", "state/lists/partial",
                     "cache/archives/partial", "log"):
            root.preauthChild(path).makedirs()
        root.child("status").setContent(b"")
        root.child("sources.list").setContent(f"deb [trusted=yes] {mirror} ./\n".encode("ascii"))
        settings = {
            "Dir::Etc::main": os.devnull,
            "Dir::Etc::parts": root.child("parts").path,
            "Dir::Etc::sourcelist": root.child("sources.list").path,
            "Dir::Etc::sourceparts": root.child("sources.list.d").path,
            "Dir::Etc::preferences": root.child("preferences").path,
            "Dir::Etc::preferencesparts": root.child("preferences.d").path,
            "Dir::Etc::trusted": root.child("trusted.gpg").path,
            "Dir::Etc::trustedparts": root.child("trusted.gpg.d").path,
            "Dir::State": root.child("state").path,
            "Dir::State::status": root.child("status").path,
            "Dir::Cache": root.child("cache").path,
            "Dir::Log": root.child("log").path,
            "Debug::NoLocking": "true",
            # The private tree belongs to whoever runs the test; apt's
            # unprivileged download user could not write to it.
            "APT::Sandbox::User": pwd.getpwuid(os.getuid()).pw_name,
            "Acquire::http::Proxy": f"http://{LOCALHOST}:{proxy.port}/",
            "Acquire::Retries": "0",
            "Acquire::http::Timeout": "60",
            "Acquire::Languages": "none",
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled": "false",
        }
        config = root.child("apt.conf")
        config.setContent("".join(f'{name} "{value}";\n' for name, value in settings.items()).encode("ascii"))
        return config.path

    def apt_get(self, config, *args, directory=None):
        """
        Run C{apt-get ARGS...} with the private configuration C{config}.

        :returns: a coroutine returning the L{tests.integration.daemon.Result}.
        """
        return run_command([*clean_environment("APT_CONFIG=" + config), self.apt_get_path, "-q", *args],
                           timeout=PACKAGE_MANAGER_TIMEOUT, directory=directory)

    async def test_deb_twice(self):
        """Two machines run apt-get update and apt-get download: the mirror sends the .deb once, the second is a hit."""
        deb = await self.build_deb()
        pool, files = self.repository(deb)
        mirror = Files(files)
        origin = start_origin(self)
        base = add_page(origin, "debian", mirror)
        deb_url = f"{base}/{pool}"
        proxy = await self.cached_proxy(*SHIPPED)
        columns = []
        for number in range(2):
            config = self.apt_config(proxy, base)
            result = await self.apt_get(config, "update")
            self.assertEqual(result.code, 0, f"{result}\n{proxy.output.transcript()}")
            self.assertNotIn("W:", result.out + result.err, result)
            download = FilePath(fresh_directory(self))
            since = proxy.mark()
            result = await self.apt_get(config, "download", "netproxy-probe", directory=download.path)
            self.assertEqual(result.code, 0, f"{result}\n{proxy.output.transcript()}")
            self.assertEqual(download.child("netproxy-probe_1.0_all.deb").getContent(), deb)
            line = await proxy.wait_for(served_line(deb_url), since)
            columns.append(line.group(1))
        self.assertEqual(columns, ["MISS", "HIT"], proxy.output.transcript())
        self.assertEqual(mirror.seen.count(pool), 1, mirror.seen)
