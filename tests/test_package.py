"""
Tests of the package's shape, read from its source with L{ast}: no import
cycles, arrows that point from the roles to the shared core, modules of a
readable size, and public functions that say their types.
"""

import ast
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

PACKAGE = Path(__file__).resolve().parent.parent / "netproxy"

# Modules above the rooms: they assemble the roles, so they may import
# any of them.
ASSEMBLY = frozenset({"netproxy.tap", "netproxy.cli", "netproxy.testing"})
# The SOCKS proxy logs its users in from the HTTP proxy's --auth-file, with
# the HTTP proxy's checks (in the thread pool, remembered, throttled per
# client): the same file and the same rules for both, and some 700 lines
# too big and too tied to the HTTP proxy's 407 to move to the core.
ALLOWED_CROSSINGS = frozenset({
    ("socks", "netproxy.http.passwords"),
    ("socks", "netproxy.http.auth"),
    ("socks", "netproxy.http.login_throttle"),
    # ... and refuses the proxy's own listening addresses as the HTTP proxy
    # does, with the same rules.
    ("socks", "netproxy.http.loops"),
})
MAX_LINES = 400


def modules():
    """
    :returns: dotted module name -> its parsed source, for every module of
        the package.
    """
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = (path, ast.parse(path.read_text(), str(path)))
    return found


def imports(name, tree, known):
    """
    :returns: the package's modules that module C{name} imports, anywhere in
        its body: an import inside a function counts, so one cannot hide a
        cycle.
    """
    package = name if known[name][0].name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
    return {target for target in targets if target in known and target != name}


def graph():
    known = modules()
    return {name: imports(name, tree, known) for name, (path, tree) in known.items()}


def cycles(edges):
    """
    :returns: the strongly connected components of more than one module
        (Tarjan's algorithm), each a sorted list.
    """
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in edges[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def room(name):
    """
    :returns: C{"message"}, C{"http"}, C{"socks"}, or C{"core"} for the
        shared modules.
    """
    parts = name.split(".")
    return parts[1] if len(parts) > 2 or parts[1:] in (["message"], ["http"], ["socks"]) else "core"


class ImportTests(SynchronousTestCase):
    """
    How the package's modules depend on one another.
    """

    def test_no_cycles(self):
        """
        No module imports, through any chain, a module that imports it.
        """
        self.assertEqual(cycles(graph()), [])

    def test_cycle_found(self):
        """
        The cycle finder finds a cycle of three, and leaves a chain alone.
        """
        self.assertEqual(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])
        self.assertEqual(cycles({"a": {"b"}, "b": set()}), [])

    def test_rooms(self):
        """
        The shared core imports no role package, the message roles and the
        HTTP proxy never import each other, and the SOCKS proxy imports only
        the HTTP proxy's logins (ALLOWED_CROSSINGS).
        """
        crossing = []
        for name, targets in graph().items():
            if name in ASSEMBLY:
                continue
            for target in targets:
                if room(target) != "core" and room(target) != room(name) and (room(name), target) not in \
                        ALLOWED_CROSSINGS:
                    crossing.append(f"{name} -> {target}")
        self.assertEqual(crossing, [])

    def test_cache_below_exchange(self):
        """
        The cache never imports the HTTP proxy's protocol or the exchange
        that drives it.
        """
        above = {"netproxy.http.proxy", "netproxy.http.exchange", "netproxy.http.background",
                 "netproxy.http.forwarding", "netproxy.http.caching"}
        offending = [f"{name} -> {target}" for name, targets in graph().items()
                     if name.startswith("netproxy.http.cache") for target in targets & above]
        self.assertEqual(offending, [])


class SizeTests(SynchronousTestCase):
    """
    Modules stay small enough to read at once.
    """

    def test_module_size(self):
        """
        No module is longer than 400 lines unless its docstring says why
        (naming the limit).
        """
        long = []
        for name, (path, tree) in modules().items():
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES and f"{MAX_LINES} lines" not in (ast.get_docstring(tree) or ""):
                long.append(f"{name}: {lines}")
        self.assertEqual(long, [])


def unannotated(tree):
    """
    :returns: the public functions and methods of public classes in C{tree}
        (an interface's declarations aside) with a parameter or a return
        type left unsaid, as C{"Class.method"} or C{"function"}.
    """
    missing = []

    def check(function, owner):
        if function.name.startswith("_") and function.name != "__init__":
            return
        arguments = function.args
        named = arguments.posonlyargs + arguments.args + arguments.kwonlyargs
        if owner and named and named[0].arg in ("self", "cls"):
            named = named[1:]
        extra = [arg for arg in (arguments.vararg, arguments.kwarg) if arg is not None]
        if any(arg.annotation is None for arg in named + extra) or (
                function.returns is None and function.name != "__init__"):
            missing.append(f"{owner}.{function.name}" if owner else function.name)

    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            check(node, None)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            if any(isinstance(base, ast.Name) and base.id == "Interface" for base in node.bases):
                continue
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    check(member, node.name)
    return missing


class AnnotationTests(SynchronousTestCase):
    """
    Public functions say their types, so that mypy checks their bodies and
    their callers.
    """

    def test_public_annotated(self):
        """
        Every public function, and every public method of a public class,
        annotates its parameters and its return.
        """
        missing = [f"{name}.{where}" for name, (path, tree) in modules().items() for where in unannotated(tree)]
        self.assertEqual(missing, [])

    def test_unannotated_found(self):
        """
        The check finds a public method without a return type, and passes
        private helpers and annotated functions.
        """
        tree = ast.parse("class A:\n def f(self, x: int): pass\n def _g(self, y): pass\n"
                         "def h(a: int) -> None: pass\n")
        self.assertEqual(unannotated(tree), ["A.f"])


def named_tests(path):
    """
    :returns: the test modules named by the C{test-case-name} header on the
        first line of C{path}, or L{None} when it has none.
    """
    first = path.read_text().partition("\n")[0]
    prefix, marker, rest = first.partition("test-case-name:")
    if not marker or not prefix.startswith("#"):
        return None
    return [name.strip() for name in rest.replace("-*-", "").split(",") if name.strip()]


class TestMapTests(SynchronousTestCase):
    """
    The tests are a map of the code: each module has a test module named
    after it, and says which tests cover it, as Twisted's modules do.
    """

    def test_module_named_after(self):
        """
        Every module of the package has a test module at the same place in
        C{tests/}: C{netproxy/http/exchange.py} is tested by
        C{tests/http/test_exchange.py}.
        """
        missing = []
        for name, (path, tree) in modules().items():
            if path.name == "__init__.py":
                continue
            parts = name.split(".")[1:]
            test = PACKAGE.parent.joinpath("tests", *parts[:-1], f"test_{parts[-1]}.py")
            if not test.exists():
                missing.append(name)
        self.assertEqual(missing, [])

    def test_headers(self):
        """
        Every module starts with a C{test-case-name} header naming test
        modules that exist.
        """
        wrong = []
        for name, (path, tree) in modules().items():
            if path.name == "__init__.py":
                continue
            named = named_tests(path)
            if not named:
                wrong.append(f"{name}: no header")
                continue
            for test in named:
                if not PACKAGE.parent.joinpath(*test.split(".")).with_suffix(".py").exists():
                    wrong.append(f"{name}: {test} does not exist")
        self.assertEqual(wrong, [])

    def test_header_parsed(self):
        """
        The header is read from the first line only, and lists its modules.
        """
        path = Path(self.mktemp())
        path.write_text("# -*- test-case-name: tests.a, tests.b -*-\n")
        self.assertEqual(named_tests(path), ["tests.a", "tests.b"])
        path.write_text('"""\n# -*- test-case-name: tests.a -*-\n"""\n')
        self.assertIsNone(named_tests(path))
