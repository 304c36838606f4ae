"""Entry point of every `py_pytest` target: pytest over the given files.

Bazel passes the test files as arguments (plus any extra pytest flags) and sets
XML_OUTPUT_FILE; pytest's JUnit XML there gives Bazel per-case results, which
`.ci/run` counts. Sharding (TEST_TOTAL_SHARDS) is not used.
"""

import os
import sys

import pytest


def main() -> int:
    args = ["-p", "no:cacheprovider", "-q", "-rs", "--strict-markers", "-m", os.environ.get("VIBE_PYTEST_MARKERS", "")]
    if not args[-1]:
        args = args[:-2]
    xml = os.environ.get("XML_OUTPUT_FILE")
    if xml:
        args += ["--junitxml", xml, "-o", "junit_family=xunit2"]
    # Markers used across the repository; --strict-markers rejects unknown ones.
    args += ["-o", "markers=learning: trains an agent to a return threshold (slow; a correctness gate)"]
    return pytest.main(args + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
