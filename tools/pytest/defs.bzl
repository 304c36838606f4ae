"""`py_pytest`: a py_test whose main runs pytest over the listed test files and
writes JUnit XML to $XML_OUTPUT_FILE, so Bazel reports per-case results."""

def py_pytest(name, srcs, deps = [], args = [], **kwargs):
    native.py_test(
        name = name,
        srcs = srcs + ["//tools/pytest:pytest_main.py"],
        main = "//tools/pytest:pytest_main.py",
        args = args + ["$(rootpath %s)" % src for src in srcs],
        deps = deps + ["@pypi//pytest"],
        python_version = "PY3",
        **kwargs
    )
