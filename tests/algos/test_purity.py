"""The execution algorithms stay pure: they import nothing that can send, store or time
anything, so a schedule can never become an order path (flatten on e-stop is a sweep
elsewhere, never one of these)."""
from __future__ import annotations

import ast
from pathlib import Path

import daemon.execution.algos as algos

ALLOWED = {"__future__", "bisect", "collections", "dataclasses", "decimal", "logging",
           "math", "daemon.execution.algos"}


def test_algos_import_only_the_standard_library_and_each_other() -> None:
    pkg = Path(algos.__file__).parent
    files = sorted(pkg.glob("*.py"))
    assert {f.name for f in files} == {"__init__.py", "twap.py", "almgren_chriss.py",
                                       "impact.py"}
    for f in files:
        tree = ast.parse(f.read_text(), str(f))
        assert ast.get_docstring(tree) and "never" in ast.get_docstring(tree), f.name
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert any(name == a or name.startswith(a + ".") for a in ALLOWED), (
                    f"{f.name} imports {name}")
