"""Imports point one way: commands -> pipelines -> the library. Nothing but a command imports a command."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    """Return the modules `path` imports (absolute names)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
    return names


def test_nothing_outside_the_commands_imports_a_command():
    commands = ROOT / "egodistill" / "commands"
    cli = ROOT / "egodistill" / "cli.py"  # discovers the command modules: the one import allowed
    files = [p for p in (ROOT / "egodistill").rglob("*.py") if commands not in p.parents and p != cli]
    files += list((ROOT / "benchmarks").rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in files
                 if any(n == "egodistill.commands" or n.startswith("egodistill.commands.") for n in _imports(p))]
    assert offenders == [], offenders


def test_the_library_below_the_pipelines_never_imports_them():
    """`engine`, `distill`, `data`, `models` and `synth` (and the shared modules) are what the
    pipelines are built from; an import the other way would make them a cycle."""
    below = [ROOT / "egodistill" / p for p in ("engine", "distill", "data", "models", "synth")]
    files = [p for d in below for p in d.rglob("*.py")]
    files += [ROOT / "egodistill" / f for f in ("atomic.py", "config.py")]
    upward = ("egodistill.pipelines", "egodistill.demo", "egodistill.cli")
    offenders = [str(p.relative_to(ROOT)) for p in files
                 if any(n == u or n.startswith(u + ".") for n in _imports(p) for u in upward)]
    assert len(files) > 40 and offenders == [], offenders
