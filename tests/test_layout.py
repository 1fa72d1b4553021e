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


def _daemon_imports(path: Path) -> set[str]:
    """Full module names this file imports (at any depth, including inside functions)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def _offenders(package: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for p in (ROOT / package).rglob("*.py"):
        bad = sorted(n for n in _daemon_imports(p)
                     if any(n == f or n.startswith(f + ".") for f in forbidden))
        if bad:
            out[str(p.relative_to(ROOT))] = bad
    return out


def test_market_produces_market_events_only():
    """Issue 9: daemon/market never imports execution, the engine, strategies or risk (nor
    anything built on them); the paper venue hears market events from the engine."""
    assert _offenders("daemon/market", ("daemon.execution", "daemon.engine",
                                        "daemon.strategy", "daemon.risk", "daemon.protection",
                                        "daemon.supervisor", "daemon.backtest")) == {}


def test_strategies_only_return_intents():
    """A strategy never reaches the gateway, a venue, the journal, risk or the engine."""
    assert _offenders("daemon/strategy", (
        "daemon.engine", "daemon.execution.gateway", "daemon.execution.paper",
        "daemon.execution.venue", "daemon.execution.reconcile", "daemon.store", "daemon.risk",
        "daemon.protection", "daemon.supervisor", "daemon.backtest")) == {}


def test_lower_layers_never_import_the_engine_or_the_daemon():
    for package in ("daemon/execution", "daemon/risk", "daemon/features", "daemon/quality",
                    "daemon/safety", "daemon/store"):
        assert _offenders(package, ("daemon.engine", "daemon.strategy", "daemon.supervisor",
                                    "daemon.backtest")) == {}, package
    assert _offenders("daemon/engine", ("daemon.supervisor", "daemon.control",
                                        "daemon.operator", "hw")) == {}


def test_the_layering_check_sees_a_violation(tmp_path):
    """The checker itself: an import inside a function is still an import."""
    f = tmp_path / "x.py"
    f.write_text("def f():\n    from daemon.execution.paper import PaperVenue\n")
    assert "daemon.execution.paper" in _daemon_imports(f)
