"""Architecture rules that a refactor must not quietly break."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def test_daemon_never_imports_gpio_libraries():
    offenders = {str(p.relative_to(ROOT)): sorted(_imports(p) & {"gpiozero", "lgpio", "RPi"})
                 for p in (ROOT / "daemon").rglob("*.py")}
    assert not {k: v for k, v in offenders.items() if v}, offenders


def test_top_level_is_as_designed():
    top = {p.name for p in ROOT.iterdir() if not p.name.startswith(".")}
    top -= {"var", "bench-results", "build"} | {n for n in top if n.endswith(".egg-info")}
    assert {"daemon", "hw", "units", "etc", "scripts", "tests", "pyproject.toml",
            "README.md"} <= top, top
    assert (ROOT / ".ci" / "run").is_file()


def test_readme_starts_with_the_two_commands_and_ci_runs_the_test_one():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[0].startswith("```")
    assert lines[1].startswith("scripts/run-sim") and lines[2].startswith("scripts/test")
    assert lines[3] == "```"
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()
