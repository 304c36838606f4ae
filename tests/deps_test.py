"""Every import is backed by a Bazel dependency.

A module may import a `vibe` module only if that module belongs to the same
target or to one of the target's direct deps, and a third-party distribution
only if the target depends on its `@pypi//name`. Otherwise code works by
accident (through someone else's deps) and breaks when they change.

BUILD files are Starlark, which Python's `ast` parses; the check reads the
py_library / py_binary / py_test / py_pytest calls with literal `srcs` and
`deps` lists (vibe's BUILD files use no globs for Python sources).
"""

import ast
import importlib.metadata
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

RULES = {"py_library", "py_binary", "py_test", "py_pytest"}
# Distributions present in every target's environment (the interpreter and the test runner).
IMPLICIT = {"pytest"}


@dataclass
class Target:
    label: str
    srcs: list[str]
    deps: set[str] = field(default_factory=set)


def normalize(label: str, package: str) -> str:
    """`:x` → `//pkg:x`; `//a/b` → `//a/b:b`; `@pypi//jax` → `@pypi//jax:jax`."""
    if label.startswith(":"):
        return f"//{package}{label}"
    if ":" not in label.split("//", 1)[-1]:
        return f"{label}:{label.rstrip('/').rsplit('/', 1)[-1]}"
    return label


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


def workspace_root() -> str:
    """The runfiles copy of the workspace (the test's working directory)."""
    return os.getcwd()


def read_targets(root: str, package: str) -> list[Target]:
    tree = ast.parse(read(os.path.join(root, package, "BUILD.bazel")))
    targets = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in RULES):
            continue
        kwargs = {kw.arg: kw.value for kw in node.keywords}
        name = ast.literal_eval(kwargs["name"])
        srcs = ast.literal_eval(kwargs["srcs"]) if "srcs" in kwargs else []
        deps = ast.literal_eval(kwargs["deps"]) if "deps" in kwargs else []
        srcs = [os.path.join(package, s) for s in srcs if not s.startswith(("//", ":"))]
        targets.append(Target(f"//{package}:{name}", srcs, {normalize(d, package) for d in deps}))
    return targets


def packages(root: str) -> list[str]:
    found = []
    for top in ("vibe", "tests", "tools"):
        for directory, _, files in os.walk(os.path.join(root, top)):
            if "BUILD.bazel" in files:
                found.append(os.path.relpath(directory, root))
    return sorted(found)


def imports(path: str) -> Iterator[tuple[str, list[str]]]:
    """(module, imported names) for every absolute import in a file."""
    tree = ast.parse(read(path), path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import; vibe imports are absolute from the workspace root")
            yield node.module or "", [alias.name for alias in node.names]


def module_files(root: str, module: str, names: list[str]) -> list[str]:
    """The files whose targets an import needs: the submodules it names, else the module itself."""

    def existing(base: str) -> list[str]:
        return [f for f in (base + ".py", base + "/__init__.py") if os.path.exists(os.path.join(root, f))]

    base = module.replace(".", "/")
    # `from vibe.train import runner` needs runner's target; the package's
    # __init__ comes with it transitively.
    submodules = [f for name in names for f in existing(f"{base}/{name}")]
    return submodules or existing(base)


def distributions() -> dict[str, set[str]]:
    """Top-level import name → normalized names of the distributions providing it."""
    mapping: dict[str, set[str]] = {}
    for top, dists in importlib.metadata.packages_distributions().items():
        mapping[top] = {d.lower().replace("-", "_").replace(".", "_") for d in dists}
    return mapping


def check(root: str, package_list: list[str]) -> list[str]:
    targets = [t for p in package_list for t in read_targets(root, p)]
    owners: dict[str, set[str]] = {}
    for target in targets:
        for src in target.srcs:
            owners.setdefault(src, set()).add(target.label)
    dists = distributions()
    errors = []
    for target in targets:
        allowed = target.deps | {target.label}
        for src in target.srcs:
            for module, names in imports(os.path.join(root, src)):
                top = module.split(".")[0]
                if top == "vibe" or top == "tests" or top == "tools":
                    for file in module_files(root, module, names):
                        if file not in owners:
                            errors.append(f"{src}: imports {file}, which no Bazel target lists in srcs")
                        elif not owners[file] & allowed:
                            choices = sorted(owners[file])
                            errors.append(f"{target.label} ({src}) imports {module}; add one of {choices} to deps")
                elif top in sys.stdlib_module_names or top == "__future__":
                    continue
                elif top in dists:
                    needed = {f"@pypi//{d}:{d}" for d in dists[top]}
                    if not needed & target.deps and not dists[top] & IMPLICIT:
                        dist = sorted(dists[top])[0]
                        errors.append(f"{target.label} ({src}) imports {top}; add @pypi//{dist} to deps")
                else:
                    errors.append(f"{src}: imports {module}, which is neither vibe, the standard library nor installed")
    return errors


def test_every_import_is_a_declared_dependency():
    root = workspace_root()
    errors = check(root, packages(root))
    assert not errors, "\n".join(errors)


def test_every_python_package_is_checked():
    """A package missing from tests/packages.bzl would escape lint, type and import checks."""
    real_root = os.path.dirname(os.path.realpath(os.path.join(workspace_root(), "MODULE.bazel")))
    on_disk = {"//" + p for p in packages(real_root)}
    listed = set(ast.literal_eval(read("tests/packages.bzl").split("PY_PACKAGES = ", 1)[1].split("]")[0] + "]"))
    assert on_disk - listed == set(), f"add {sorted(on_disk - listed)} to PY_PACKAGES in tests/packages.bzl"


def _write(root, path, text):
    full = root / path
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_text(text)


@pytest.fixture
def fake_workspace(tmp_path):
    _write(tmp_path, "vibe/__init__.py", "")
    _write(tmp_path, "vibe/a/__init__.py", "")
    _write(tmp_path, "vibe/a/x.py", "import numpy\n")
    _write(tmp_path, "vibe/b/__init__.py", "")
    _write(tmp_path, "vibe/b/y.py", "from vibe.a import x\n")
    return tmp_path


def test_check_reports_undeclared_vibe_and_third_party_imports(fake_workspace):
    _write(fake_workspace, "vibe/a/BUILD.bazel", 'py_library(name = "a", srcs = ["__init__.py", "x.py"])\n')
    _write(fake_workspace, "vibe/b/BUILD.bazel", 'py_library(name = "b", srcs = ["__init__.py", "y.py"])\n')
    errors = check(str(fake_workspace), ["vibe/a", "vibe/b"])
    assert any("//vibe/a:a (vibe/a/x.py) imports numpy; add @pypi//numpy" in e for e in errors), errors
    assert any("//vibe/b:b (vibe/b/y.py) imports vibe.a; add one of ['//vibe/a:a']" in e for e in errors), errors


def test_check_accepts_declared_imports(fake_workspace):
    _write(
        fake_workspace,
        "vibe/a/BUILD.bazel",
        'py_library(name = "a", srcs = ["__init__.py", "x.py"], deps = ["@pypi//numpy"])\n',
    )
    _write(
        fake_workspace,
        "vibe/b/BUILD.bazel",
        'py_library(name = "b", srcs = ["__init__.py", "y.py"], deps = ["//vibe/a"])\n',
    )
    assert check(str(fake_workspace), ["vibe/a", "vibe/b"]) == []
