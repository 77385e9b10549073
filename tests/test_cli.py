"""The `egodistill` command line: help for the root and for every discovered subcommand, errors."""
from __future__ import annotations

import argparse
import importlib
import pkgutil
import subprocess
import sys

import pytest

from egodistill import __version__, cli, commands
from egodistill.config import ConfigError


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """Return {name: parser} of every subcommand registered at test time, in help order."""
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_python_m_egodistill_help():
    out = subprocess.run(
        [sys.executable, "-m", "egodistill", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: egodistill")
    for name in subcommands():
        assert name in out.stdout  # every subcommand is listed


def test_root_help_in_process(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    assert "knowledge distillation" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"egodistill {__version__}"


def test_no_command_prints_help_and_returns_2(capsys):
    assert cli.main([]) == 2
    assert "usage: egodistill" in capsys.readouterr().out


def test_unknown_command_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["no-such-command"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_every_subcommand_help(capsys):
    names = list(subcommands())
    for name in names:
        with pytest.raises(SystemExit) as e:
            cli.main([name, "--help"])
        assert e.value.code == 0, name
        assert f"usage: egodistill {name}" in capsys.readouterr().out, name


def test_every_command_module_registers_a_func():
    """Each module in egodistill.commands with `register` has an int ORDER and sets `func`."""
    parsers = subcommands()
    registered_funcs = {name: p.get_default("func") for name, p in parsers.items()}
    for name, func in registered_funcs.items():
        assert callable(func), f"subcommand {name!r} does not set func"
    for info in pkgutil.iter_modules(commands.__path__):
        mod = importlib.import_module(f"egodistill.commands.{info.name}")
        if hasattr(mod, "register"):
            assert isinstance(getattr(mod, "ORDER", None), int), f"egodistill.commands.{info.name} lacks ORDER: int"


def test_subcommands_appear_in_order():
    """build_parser registers modules sorted by ORDER; each module's parsers stay together."""
    expected: list[tuple[int, list[str]]] = []
    for info in pkgutil.iter_modules(commands.__path__):
        mod = importlib.import_module(f"egodistill.commands.{info.name}")
        if hasattr(mod, "register"):
            sub = argparse.ArgumentParser().add_subparsers()
            mod.register(sub)
            expected.append((getattr(mod, "ORDER", 100), list(sub.choices)))
    expected.sort(key=lambda item: item[0])
    assert list(subcommands()) == [name for _, names in expected for name in names]


def _fake_parser(error: Exception) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="egodistill")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("boom")
    p.add_argument("--debug", action="store_true")

    def run(args):
        raise error

    p.set_defaults(func=run)
    return parser


@pytest.mark.parametrize(
    "error",
    [
        ConfigError("config key 'optim.lrr' is unknown"),
        FileNotFoundError("rgb store not found: /x/rgb.h5"),
        KeyError("video P01_01 frame 7 missing from /x/rgb.h5"),
        ValueError("bad value"),
    ],
)
def test_user_errors_print_one_line_and_exit_1(monkeypatch, capsys, error):
    monkeypatch.setattr(cli, "build_parser", lambda: _fake_parser(error))
    assert cli.main(["boom"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("egodistill boom: error: ")
    assert "Traceback" not in err
    assert str(error) in err


def test_debug_flag_reraises(monkeypatch):
    monkeypatch.setattr(cli, "build_parser", lambda: _fake_parser(ConfigError("x")))
    with pytest.raises(ConfigError):
        cli.main(["boom", "--debug"])


def test_command_return_code_is_passed_through(monkeypatch):
    parser = argparse.ArgumentParser(prog="egodistill")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("ok").set_defaults(func=lambda args: None)
    sub.add_parser("three").set_defaults(func=lambda args: 3)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert cli.main(["ok"]) == 0
    assert cli.main(["three"]) == 3


def test_discovers_a_new_command_module(monkeypatch, tmp_path, capsys):
    """A module dropped into egodistill.commands becomes a subcommand, placed by its ORDER."""
    (tmp_path / "zz_first.py").write_text(
        "ORDER = -1000\n"
        "def register(subparsers):\n"
        "    p = subparsers.add_parser('zz-first', help='a test command')\n"
        "    p.add_argument('value', type=int)\n"
        "    p.set_defaults(func=lambda args: args.value)\n"
    )
    monkeypatch.setattr(commands, "__path__", [*commands.__path__, str(tmp_path)])
    monkeypatch.delitem(sys.modules, "egodistill.commands.zz_first", raising=False)
    try:
        assert list(subcommands())[0] == "zz-first"
        assert cli.main(["zz-first", "5"]) == 5
        with pytest.raises(SystemExit) as e:
            cli.main(["zz-first", "--help"])
        assert e.value.code == 0 and "usage: egodistill zz-first" in capsys.readouterr().out
    finally:
        sys.modules.pop("egodistill.commands.zz_first", None)
