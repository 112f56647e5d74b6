"""The annotation app's pure ES modules (static/annotation/ranking.js, scores.js, outbox.js)
under Node's own test runner: tests/annotation/js/*.test.mjs, no server, no browser, no npm.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.conftest import ROOT

JS_TESTS = ROOT / "tests" / "annotation" / "js"
# From 20.19 (and 22.7) Node loads a .js file with `export` in it as an ES module without a
# package.json saying "type": "module"; static/ has none, so older versions cannot run these.
MIN_NODE = (20, 19)


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JS unit tests need Node >= 20.19")
    version = subprocess.run([node, "--version"], capture_output=True, text=True).stdout
    major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
    if (major, minor) < MIN_NODE:
        pytest.skip(f"node {version.strip()} is too old: the JS unit tests need Node >= 20.19")
    return node


def test_the_pure_modules_pass_their_node_tests() -> None:
    node = node_or_skip()

    result = subprocess.run(
        [node, "--test", "--test-reporter=tap", str(JS_TESTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    passed = re.search(r"^# pass (\d+)$", report, re.MULTILINE)
    # A path that matched no test files would also exit 0.
    assert passed and int(passed.group(1)) > 0, report
    assert re.search(r"^# fail 0$", report, re.MULTILINE), report
