"""The shape of ds/: imports point down the package list and never in a circle,
the Lambda package holds only what its handler imports, and the linter is clean."""
import io
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from conftest import REPO

sys.path.insert(0, REPO)
from ds.monitor import install  # noqa: E402

# Lowest first: a module may import its own package and those before it.
LAYERS = ["core", "resources", "operate", "monitor", "commands", "cli"]


def ds_modules():
    """Every module file of ds/, as a path relative to the repository."""
    found = []
    for folder, _dirs, files in os.walk(os.path.join(REPO, "ds")):
        found.extend(os.path.relpath(os.path.join(folder, f), REPO)
                     for f in files if f.endswith(".py"))
    return sorted(found)


def graph():
    return {path: {p for p in install.imports_of(path) if p.startswith("ds/")}
            for path in ds_modules()}


def layer(path):
    parts = path[:-len(".py")].split("/")
    return LAYERS.index(parts[1]) if parts[1] in LAYERS else -1  # ds/__init__.py: -1


def find_cycle(edges):
    """One import cycle as a list of paths, or None (depth-first search)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "closed"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_import_walker_sees_function_level_and_from_imports():
    edges = graph()
    assert "ds/commands/check.py" in edges["ds/commands/start.py"]  # imported in a function
    assert "ds/resources/queue.py" in edges["ds/operate/status.py"]  # from ds.resources import
    assert "ds/core/__init__.py" in edges["ds/core/aws.py"]


def test_ds_has_no_import_cycle():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_point_down_the_package_list():
    upward = ["%s imports %s" % (path, dep) for path, deps in graph().items()
              for dep in deps if layer(dep) > layer(path)]
    assert not upward, upward


def test_every_package_file_is_known():
    """A new top-level package of ds/ takes its place in LAYERS (and in ds/__init__'s list)."""
    packages = {p.split("/")[1].replace(".py", "") for p in ds_modules()} - {"__init__"}
    assert packages == set(LAYERS)


def test_lambda_package_holds_exactly_what_the_handler_imports(tmp_path):
    code = install.package()
    names = set(zipfile.ZipFile(io.BytesIO(code)).namelist())
    print("Lambda package: %d files, %d bytes" % (len(names), len(code)))
    for unwanted in ("ds/operate/report.py", "ds/operate/failures.py", "ds/operate/joblog.py",
                     "ds/monitor/laptop.py", "ds/monitor/install.py", "worker/dsjob.py"):
        assert unwanted not in names, unwanted
    assert not [n for n in names if "jinja2" in n or n.endswith(".html")]
    pkg = tmp_path / "pkg"
    zipfile.ZipFile(io.BytesIO(code)).extractall(pkg)
    # The runtime imports the handler's module from the unpacked package alone;
    # every file the package holds must then have been loaded.
    module = install.HANDLER.rsplit(".", 1)[0]
    probe = ("import sys; sys.path.insert(0, %r); import %s; "
             "print('\\n'.join(sorted(getattr(m, '__file__', None) or '' "
             "for m in list(sys.modules.values()))))" % (str(pkg), module))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=str(tmp_path), check=True).stdout
    loaded = {os.path.relpath(f, str(pkg)) for f in out.split()
              if f.startswith(str(pkg) + os.sep)}
    assert loaded == names, ("in the package but never imported: %s; imported but missing: %s"
                             % (sorted(names - loaded), sorted(loaded - names)))


def test_the_linter_finds_nothing():
    ruff = shutil.which("ruff") or os.path.join(os.path.dirname(sys.executable), "ruff")
    if not os.path.exists(ruff):
        pytest.fail("ruff is not installed: pip install -r requirements-dev.txt")
    done = subprocess.run([ruff, "check", "--no-cache", "."], cwd=REPO, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stdout + done.stderr
