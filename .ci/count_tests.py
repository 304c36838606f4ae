"""Prints the closing `N passed, N failed, N skipped` line of a `bazel test` run.

Counts test cases from each test target's JUnit XML (bazel-testlogs/<target>/test.xml);
the targets are the ones Bazel's summary lists, cached or not. A target with no
readable XML counts as one case with the target's status. Exits non-zero when
Bazel did or when anything failed.
"""

import os
import re
import sys
import xml.etree.ElementTree as ET

STATUS = re.compile(r"^(//\S+)\s+(?:\(cached\)\s+)?(PASSED|FAILED|TIMEOUT|FLAKY|NO STATUS|INCOMPLETE)\b")


def count_xml(path: str) -> tuple[int, int, int] | None:
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None
    passed = failed = skipped = 0
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
    return (passed, failed, skipped) if passed + failed + skipped else None


def main() -> int:
    log_path, bazel_rc = sys.argv[1], int(sys.argv[2])
    passed = failed = skipped = 0
    with open(log_path, errors="replace") as log:
        for line in log:
            match = STATUS.match(line.strip())
            if not match:
                continue
            target, status = match.groups()
            package, _, name = target[2:].partition(":")
            counts = count_xml(os.path.join("bazel-testlogs", package, name, "test.xml"))
            if counts is None or status != "PASSED" and counts[1] == 0:
                counts = (1, 0, 0) if status == "PASSED" else (0, 1, 0)
            passed, failed, skipped = passed + counts[0], failed + counts[1], skipped + counts[2]
    if bazel_rc not in (0,) and failed == 0:
        failed = 1  # the build itself failed, or Bazel ran no test
        print(f"bazel exited with {bazel_rc} before reporting a failing test", file=sys.stderr)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed or bazel_rc else 0


if __name__ == "__main__":
    sys.exit(main())
