"""Issue 14's size limits for the library: no file in xpengine/ over 500 lines and no function over 120
lines (a long one is a sign that one home holds two concepts)."""

import ast
from pathlib import Path

from _paths import ROOT

MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 120


def _sources() -> list[Path]:
    return sorted((ROOT / "xpengine").rglob("*.py"))


def test_no_library_file_is_over_the_limit():
    long = {
        str(p.relative_to(ROOT)): n
        for p in _sources()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_library_function_is_over_the_limit():
    long = {}
    for p in _sources():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long[f"{p.relative_to(ROOT)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_check_sees_the_library():
    assert len(_sources()) > 50
