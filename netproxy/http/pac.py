# -*- test-case-name: tests.http.test_pac -*-
"""
The proxy auto-configuration file (PAC) browsers fetch to learn which
proxy to use: C{/proxy.pac}, and C{/wpad.dat} where WPAD looks for it.

It is the operator's file (C{--pac-file}, read at start and re-read on
SIGHUP), or else one generated for each request: everything goes to this
proxy, at the address the browser reached it by, except the browser's own
host (C{localhost}, loopback: the browser's machine, not the proxy's)
and the destinations of the C{--direct} rules, which go C{DIRECT}.

Every client the proxy admits (C{--allow}) may fetch it, not only the
C{--admin} networks: browsers fetch it before they use the proxy, and
without proxy credentials, so C{--auth-file} does not guard it either.
It holds nothing the proxy's users do not learn by using it.

The generated file is JavaScript built from data: every value in it is
written as a JSON string or number (escaped so that no text of a rule or
of a request can end a string or a script), and the matching is done by a
fixed function, without DNS look-ups in the browser (an address rule
matches URLs that name the address).
"""

import json
import os
from collections.abc import Iterable
from ipaddress import IPv4Network, IPv6Network, ip_address

from twisted.python.filepath import FilePath

from netproxy.acl import Rule, host_address, parse_rule
from netproxy.errors import HTTPError, PacFileError
from netproxy.escaping import Logger
from netproxy.http.interfaces import IExchange

PATHS = (b"/proxy.pac", b"/wpad.dat")
CONTENT_TYPE = b"application/x-ns-proxy-autoconfig"
#: The largest PAC file read: real ones are a few KiB; browsers evaluate the
#: whole file for every URL.
MAX_PAC_SIZE = 1024 * 1024
#: What a PAC file must define to be one.
_ENTRY_POINT = b"FindProxyForURL"

#: The browser's own host: never through the proxy.
BROWSER_HOST = tuple(parse_rule(text) for text in ("localhost", "*.localhost", "127.0.0.0/8", "::1"))

# The fixed part of the generated file.  It reads the port from the URL and
# the host as an address where it is one, and tries each rule as
# netproxy.acl does: a port rule only for that port, a name rule for that
# name, "*.name" for names below it, a network for addresses in it.
_MATCHER = r"""
function netproxyPort(url) {
    var m = /^([a-z][a-z0-9+.\-]*):\/\/(?:[^\/?#@]*@)?(\[[^\]\/?#]*\]|[^:\/?#]*)(?::(\d*))?/i.exec(url);
    if (!m) return null;
    if (m[3]) return parseInt(m[3], 10);
    var scheme = m[1].toLowerCase();
    return scheme === "https" || scheme === "wss" ? 443 : scheme === "ftp" ? 21 : 80;
}
function netproxyIPv4(text) {
    var m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
    if (!m) return null;
    var groups = [];
    for (var i = 1; i <= 4; i++) {
        var byte = parseInt(m[i], 10);
        if (byte > 255) return null;
        groups.push(byte);
    }
    return [groups[0] * 256 + groups[1], groups[2] * 256 + groups[3]];
}
function netproxyIPv6(text) {
    if (text.indexOf(":") < 0) return null;
    var last = text.lastIndexOf(":"), tail = null, i;
    if (text.slice(last + 1).indexOf(".") >= 0) {
        // An IPv4 tail (::ffff:192.0.2.1) stands for the last two groups.
        tail = netproxyIPv4(text.slice(last + 1));
        if (tail === null) return null;
        text = text.slice(0, last + 1) + "0:0";
    }
    var parts = text.split("::");
    if (parts.length > 2) return null;
    var head = parts[0] ? parts[0].split(":") : [];
    var rest = parts.length === 2 && parts[1] ? parts[1].split(":") : [];
    var missing = 8 - head.length - rest.length;
    if (parts.length === 2 ? missing < 1 : missing !== 0) return null;
    var groups = head.slice();
    for (i = 0; parts.length === 2 && i < missing; i++) groups.push("0");
    groups = groups.concat(rest);
    var numbers = [];
    for (i = 0; i < 8; i++) {
        if (!/^[0-9a-f]{1,4}$/i.test(groups[i])) return null;
        numbers.push(parseInt(groups[i], 16));
    }
    if (tail !== null) numbers = numbers.slice(0, 6).concat(tail);
    if (numbers[0] === 0 && numbers[1] === 0 && numbers[2] === 0 && numbers[3] === 0 && numbers[4] === 0 &&
            numbers[5] === 65535) return {v4: numbers.slice(6)};
    return {v6: numbers};
}
function netproxyAddress(host) {
    if (host.charAt(0) === "[" && host.charAt(host.length - 1) === "]") host = host.slice(1, -1);
    var v4 = netproxyIPv4(host);
    if (v4 !== null) return {v4: v4};
    return netproxyIPv6(host.split("%")[0]);
}
function netproxyInNetwork(groups, network, prefix) {
    for (var i = 0; i < network.length && prefix > 0; i++, prefix -= 16) {
        var scale = Math.pow(2, 16 - Math.min(16, prefix));
        if (Math.floor(groups[i] / scale) !== Math.floor(network[i] / scale)) return false;
    }
    return true;
}
function netproxyMatches(rule, name, address, port) {
    if (rule.port !== null && rule.port !== port) return false;
    if (rule.v4) return address !== null && !!address.v4 && netproxyInNetwork(address.v4, rule.v4, rule.prefix);
    if (rule.v6) return address !== null && !!address.v6 && netproxyInNetwork(address.v6, rule.v6, rule.prefix);
    if (rule.name === null) return true;
    if (address !== null) return false;
    if (!rule.below) return name === rule.name;
    var suffix = "." + rule.name;
    return name.length > suffix.length && name.slice(-suffix.length) === suffix;
}
function FindProxyForURL(url, host) {
    var name = host.toLowerCase().replace(/\.$/, "");
    var address = netproxyAddress(name);
    var port = netproxyPort(url);
    for (var i = 0; i < NETPROXY_DIRECT.length; i++) {
        if (netproxyMatches(NETPROXY_DIRECT[i], name, address, port)) return "DIRECT";
    }
    return NETPROXY_PROXY;
}
"""


def _groups(network: IPv4Network | IPv6Network) -> list[int]:
    # 16-bit groups, which JavaScript's numbers hold exactly.
    packed = network.network_address.packed
    return [int.from_bytes(packed[i:i + 2], "big") for i in range(0, len(packed), 2)]


def _rule_data(rule: Rule) -> dict[str, object]:
    data: dict[str, object] = {"port": rule.port, "name": None}
    network = rule.network
    if network is not None:
        data["v4" if network.version == 4 else "v6"] = _groups(network)
        data["prefix"] = network.prefixlen
    elif rule.name is not None:
        data["name"], data["below"] = rule.name, rule.subdomains
    return data


def javascript_value(value: object) -> str:
    """
    :returns: C{value} (JSON data) as a JavaScript expression: JSON with
        everything outside printable ASCII escaped, and C{<}, C{>} and C{&}
        too, so that no value can close a string, a comment or a script
        element whatever embeds the file.
    """
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def generated_pac(proxy: str, direct: Iterable[Rule] = ()) -> bytes:
    """
    :param proxy: this proxy's address as the browser reaches it,
        C{host:port} (an IPv6 host in brackets).
    :param direct: the rules of destinations to reach without the proxy
        (C{--direct}), after the browser's own host.
    :returns: a PAC file sending every other URL to C{proxy}.
    """
    rules = [_rule_data(rule) for rule in (*BROWSER_HOST, *direct)]
    return ("// The proxy auto-configuration of netproxy, generated for this request.\n"
            f"var NETPROXY_PROXY = {javascript_value('PROXY ' + proxy)};\n"
            f"var NETPROXY_DIRECT = {javascript_value(rules)};\n" + _MATCHER).encode("ascii")


def _read_pac(path: "FilePath[str]") -> bytes:
    try:
        with path.open("r") as f:
            content = f.read(MAX_PAC_SIZE + 1)
    except OSError as e:
        raise PacFileError(f"cannot read {path.path}: {e.strerror or e}") from None
    if len(content) > MAX_PAC_SIZE:
        raise PacFileError(f"{path.path} is larger than {MAX_PAC_SIZE // 1024} KiB")
    if _ENTRY_POINT not in content:
        raise PacFileError(f"{path.path} defines no FindProxyForURL function: not a PAC file")
    return content


class PacFile:
    """
    The operator's PAC file, served as it is; reloadable.

    :param path: the file.
    :raises PacFileError: when it cannot be read, is too large, or is no
        PAC file.
    """

    log = Logger()

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = FilePath(os.fsdecode(path))
        self.content = _read_pac(self.path)

    def reload(self) -> bool:
        """
        Re-read the file, or keep the content in force if it cannot be
        read or is no PAC file (logging why).

        :returns: whether the new content is in force.
        """
        try:
            content = _read_pac(self.path)
        except PacFileError as e:
            self.log.error("refused to reload the PAC file: {reason}; keeping the one in force ({size} bytes)",
                           reason=str(e), size=len(self.content))
            return False
        self.content = content
        self.log.info("reloaded the PAC file {path} ({size} bytes)", path=self.path.path, size=len(content))
        return True


def _named_address(value: bytes) -> tuple[str, int] | None:
    """
    :returns: the address and port a C{Host} field names, when it names an
        IP address, or L{None}.
    """
    text = value.decode("ascii", "replace").strip()
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close or rest[:1] not in ("", ":"):
            return None
        port_text = rest[1:]
    else:
        host, _, port_text = text.partition(":")
    if port_text and not (port_text.isascii() and port_text.isdigit() and len(port_text) <= 5):
        return None
    port = int(port_text) if port_text else 80
    address = host_address(host)
    if address is None or not 0 < port < 65536:
        return None
    return str(address), port


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def proxy_address(exchange: IExchange) -> str | None:
    """
    :returns: the address the client reached the proxy by, for the
        generated file: the request's C{Host} when it names one of the
        proxy's listening addresses, else the connection's local address;
        L{None} when it has none (a Unix socket).
    """
    for name, value in exchange.head.headers:
        if name.lower() == b"host":
            named = _named_address(value)
            if named is not None and exchange.factory.listening.match(*named) is not None:
                return _authority(*named)
            break
    local = exchange.client.transport.getHost()
    host, port = getattr(local, "host", None), getattr(local, "port", None)
    if not isinstance(host, str) or not isinstance(port, int):
        return None
    host = host.partition("%")[0]
    try:
        address = ip_address(host)
    except ValueError:
        return None
    if address.version == 6 and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return _authority(str(address), port)


def pac_body(exchange: IExchange) -> bytes:
    """
    :returns: the PAC file for the request of C{exchange}.
    :raises HTTPError: 404 when there is no file and the client reached the
        proxy by no address a browser could use (a Unix socket).
    """
    factory = exchange.factory
    if factory.pac_file is not None:
        content: bytes = factory.pac_file.content
        return content
    proxy = proxy_address(exchange)
    if proxy is None:
        raise HTTPError(404, "no PAC file for clients of a Unix socket: it has no address to name (see --pac-file)")
    return generated_pac(proxy, factory.pac_direct)
