"""The `@pypi` hub: one virtualenv from the hashed lock, its interpreter as the
Python toolchain, and one `py_library` per locked distribution.

rules_python's pip integration downloads helper wheels through Bazel's
downloader, which cannot work offline here, so this small rule does the same
job by hand. Its labels follow rules_python's hub scheme (`@pypi//jax`,
`@pypi//orbax_checkpoint`), so moving to rules_python later is a rename.

The venv is several GB and takes minutes to build, and every clone gets its own
Bazel output base, so it lives outside the output base, keyed by the lock's
sha256: `${XDG_CACHE_HOME:-$HOME/.cache}/vibe/venvs/<sha256>` (`VIBE_VENV`
overrides). Every clone and output base with the same lock reuses it.
"""

_PY_VERSION = "3.12"

def _normalize(name):
    return name.lower().replace("-", "_").replace(".", "_")

def _works(ctx, python):
    if not python:
        return False
    result = ctx.execute([python, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"])
    return result.return_code == 0

def _find_python(ctx):
    """An explicit VIBE_PYTHON, then a python3.12 that runs, then pyenv's folder."""
    explicit = ctx.os.environ.get("VIBE_PYTHON", "")
    if explicit:
        if not _works(ctx, explicit):
            fail("VIBE_PYTHON=%s is not a working Python %s interpreter." % (explicit, _PY_VERSION))
        return explicit
    on_path = ctx.which("python" + _PY_VERSION)
    if on_path and _works(ctx, str(on_path)):
        return str(on_path)

    # pyenv's shim refuses to run unless pyenv selects 3.12; its versions folder works.
    home = ctx.os.environ.get("HOME", "")
    pyenv_root = ctx.os.environ.get("PYENV_ROOT", home + "/.pyenv")
    found = ctx.execute(["sh", "-c", "ls -d %s/versions/%s*/bin/python%s 2>/dev/null | sort -V | tail -n 1" % (
        pyenv_root,
        _PY_VERSION,
        _PY_VERSION,
    )]).stdout.strip()
    if _works(ctx, found):
        return found
    fail("No Python %s interpreter found. Install one (e.g. `pyenv install 3.12`) or set VIBE_PYTHON=/path/to/python3.12." % _PY_VERSION)

def _venv_dir(ctx, lock_sha):
    explicit = ctx.os.environ.get("VIBE_VENV", "")
    if explicit:
        return explicit
    cache = ctx.os.environ.get("XDG_CACHE_HOME", "") or ctx.os.environ.get("HOME", "") + "/.cache"
    return "%s/vibe/venvs/%s" % (cache, lock_sha)

def _pypi_hub_impl(ctx):
    lock = ctx.path(ctx.attr.lock)
    python = _find_python(ctx)
    lock_sha = ctx.execute([python, "-c", "import hashlib, sys; print(hashlib.sha256(open(sys.argv[1], 'rb').read()).hexdigest())", str(lock)]).stdout.strip()
    venv = _venv_dir(ctx, lock_sha)

    ctx.report_progress("Python environment %s (the first build installs it: a few minutes)" % venv)
    result = ctx.execute(
        [python, str(ctx.path(ctx.attr.setup_script)), "--python", python, "--lock", str(lock), "--venv", venv],
        timeout = 7200,
        quiet = False,
    )
    if result.return_code != 0:
        fail("Creating the Python environment failed (exit %d):\n%s\n%s" % (result.return_code, result.stdout, result.stderr))

    ctx.symlink(lock, "requirements_lock.txt")
    ctx.symlink(venv, "venv")

    names = []
    for line in ctx.read(lock).splitlines():
        if not line or line[0] in " #-":
            continue
        name = line.split("==")[0].split("[")[0].strip()
        if name:
            names.append(_normalize(name))

    build = [
        'load("@bazel_tools//tools/python:toolchain.bzl", "py_runtime_pair")',
        "",
        'package(default_visibility = ["//visibility:public"])',
        "",
        'exports_files(["requirements_lock.txt"])',
        "",
        "py_runtime(",
        '    name = "python3",',
        '    interpreter_path = "%s/bin/python3",' % venv,
        '    python_version = "PY3",',
        ")",
        "",
        'py_runtime_pair(name = "runtime_pair", py3_runtime = ":python3")',
        "",
        "toolchain(",
        '    name = "python_toolchain",',
        '    toolchain = ":runtime_pair",',
        '    toolchain_type = "@bazel_tools//tools/python:toolchain_type",',
        ")",
        "",
    ]
    ctx.file("BUILD.bazel", "\n".join(build) + "\n")

    # One package per distribution, as rules_python's hub: @pypi//jax is
    # @pypi//jax:jax. The distribution itself is installed in the venv (on the
    # interpreter's path); the target carries the lock so that changing it
    # re-runs every dependent test.
    for name in names:
        ctx.file("%s/BUILD.bazel" % name, "\n".join([
            'package(default_visibility = ["//visibility:public"])',
            "",
            'py_library(name = "%s", data = ["//:requirements_lock.txt"])' % name,
            "",
        ]))
    ctx.file("WORKSPACE", 'workspace(name = "%s")\n' % ctx.name)

pypi_hub = repository_rule(
    implementation = _pypi_hub_impl,
    attrs = {
        "lock": attr.label(mandatory = True, allow_single_file = True),
        "setup_script": attr.label(mandatory = True, allow_single_file = True),
    },
    environ = ["VIBE_VENV", "VIBE_PYTHON", "XDG_CACHE_HOME", "HOME", "PYENV_ROOT"],
    local = True,
)
