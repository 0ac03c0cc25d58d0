"""The page's JavaScript unit tests (tests/js/*.test.mjs), run with Node's built-in test runner.

Skipped, with the reason, when Node 20.10 or newer is not on PATH; CI sets
RETRAIN_LOOP_REQUIRE_BROWSER=1, and there a missing Node fails instead of skipping.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

JS_TESTS = Path(__file__).parent / "js"
REQUIRED = os.environ.get("RETRAIN_LOOP_REQUIRE_BROWSER") == "1"
# The page's modules are .js files outside any package.json with "type": "module"; Node reads them
# as modules by detecting their syntax, on by default from 22.7 and behind this flag from 20.10.
DETECT_MODULE = "--experimental-detect-module"


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"JavaScript tests required but {reason}")
    pytest.skip(reason)


def _node_version(node: str) -> tuple[int, int]:
    out = subprocess.run(
        [node, "--version"], check=False, capture_output=True, text=True, timeout=30
    ).stdout
    found = re.match(r"v(\d+)\.(\d+)", out.strip())
    return (int(found.group(1)), int(found.group(2))) if found else (0, 0)


def test_javascript_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        _unavailable("node is not on PATH")
    version = _node_version(node)
    if version < (20, 10):
        _unavailable(f"node {version[0]}.{version[1]} is older than 20.10")
    files = sorted(str(p) for p in JS_TESTS.glob("*.test.mjs"))
    assert files, f"no *.test.mjs files in {JS_TESTS}"
    # Files, not the folder: from Node 21 the arguments of --test are glob patterns.
    flags = [DETECT_MODULE] if version < (22, 7) else []
    # TAP, whatever Node's default reporter: its summary lines are what is checked below.
    result = subprocess.run(
        [node, *flags, "--test", "--test-reporter=tap", *files],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)
    assert passed and int(passed.group(1)) > 0, report
    assert re.search(r"^# fail 0$", result.stdout, re.MULTILINE), report
