"""The root command: each command line loads only the command group it names."""

from __future__ import annotations

import importlib

import pytest
import typer

from clearwall.cli.main import COMMAND_MODULES, COMMANDS, modules_for


def _registered(module_name: str) -> set[str]:
    app = typer.Typer()
    importlib.import_module(module_name).register(app)
    names = {c.name for c in app.registered_commands}
    names |= {g.name for g in app.registered_groups}
    assert None not in names, f"{module_name} registers a command without an explicit name"
    return {n for n in names if n is not None}


def test_the_command_table_is_what_the_modules_register() -> None:
    registered = {name: module for module in COMMAND_MODULES for name in _registered(module)}
    assert registered == COMMANDS
    assert set(COMMANDS.values()) == set(COMMAND_MODULES)


@pytest.mark.parametrize(
    "argv, modules",
    [
        (["serve", "--dns", "127.0.0.1:53"], ("clearwall.cli.serve",)),
        (["check", "www.example.com", "--json"], ("clearwall.cli.policy",)),
        (["orders", "add", "--help"], ("clearwall.cli.policy",)),
        (["probe-helper"], ("clearwall.cli.probe",)),
        (["--help"], COMMAND_MODULES),
        ([], COMMAND_MODULES),
        (["no-such-command"], COMMAND_MODULES),  # typer then says what exists
    ],
)
def test_a_command_line_loads_its_own_group(argv: list[str], modules: tuple[str, ...]) -> None:
    assert modules_for(argv) == modules


def test_a_lone_command_keeps_its_name(tmp_path: object) -> None:
    """Loading one group leaves a group: ``clearwall serve --help`` is serve's help."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "clearwall", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--dns" in done.stdout and "Usage: python -m clearwall serve" in done.stdout
