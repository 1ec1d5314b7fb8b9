"""The package's layers, read from the source: which modules may import which.

From the bottom: the pure ledger core (Merkle tree, proofs, notes, checkpoints, keys,
cosignatures, the entry model and the log's storage contract) imports no I/O layer; the
store imports the core and nothing of the upper ledger; the upper ledger (tiles on disk,
sync, readers, proving, audit, witnessing, HTTP) works on the core's ``LogStore``
Protocol and imports nothing of the store; the jobs need no web app; the query log
reaches neither the store, the ledger nor the web app; the control plane (the policy
compiler) imports nothing of the DNS data plane but its process lifeline, and the data
plane reaches the control plane only through its client, ``control.policy_source``. Only
the entry model names entry types.
Every import counts, inside functions and ``TYPE_CHECKING`` blocks too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from clearwall.ledger import entries

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGE = SRC / "clearwall"

LEDGER_CORE = frozenset(
    f"clearwall.ledger.{m}"
    for m in (
        "checkpoint",
        "cosignature",
        "entries",
        "logstate",
        "logstore",
        "memorystore",
        "merkle",
        "nameproof",
        "note",
        "proofs",
        "signing",
        "state",
        "tiles",
    )
)
UPPER_LEDGER = frozenset(
    f"clearwall.ledger.{m}"
    for m in (
        "audit",
        "http",
        "log",
        "prover",
        "published",
        "readers",
        "remote",
        "tiledir",
        "witnessing",
    )
)
# What sits above the store and the ledger: none of it may be imported from below.
ABOVE = (
    "clearwall.web",
    "clearwall.cli",
    "clearwall.control",
    "clearwall.dnsserver",
    "clearwall.jobs",
    "clearwall.querylog",
    "clearwall.xfr",
    "clearwall.federation",
)


# What the DNS data plane may import of the control plane: the client that compiles, hands
# over and keeps snapshots (``PolicySource``, ``load_snapshot``, ``saved_size``).
CONTROL_CLIENT = "clearwall.control.policy_source"
# What the control plane may import of the data plane's package: the parent-death signal
# its compiler process sets (a process utility, no listener, no handler).
DATA_PLANE_UTILITIES = frozenset({"clearwall.dnsserver.lifeline"})


def module_name(path: Path) -> str:
    """``src/clearwall/ledger/log.py`` -> ``clearwall.ledger.log``."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(prefix: str) -> list[Path]:
    """The source files of every module named ``prefix`` or below it."""
    return [
        p for p in sorted(PACKAGE.rglob("*.py")) if f"{module_name(p)}.".startswith(prefix + ".")
    ]


def imported(path: Path) -> Iterator[tuple[int, str]]:
    """Every clearwall module ``path`` imports, with the line: ``from a import b`` names
    ``a.b`` when that is a module, else ``a``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("clearwall"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("clearwall"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                is_module = (SRC / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    SRC / Path(*sub.split(".")) / "__init__.py"
                ).exists()
                yield node.lineno, sub if is_module else node.module


def offences(prefixes: list[str], forbidden: frozenset[str] | tuple[str, ...]) -> list[str]:
    """``file:line imports module`` for each import of a forbidden module (or of one below
    a forbidden package) by a module under ``prefixes``."""
    found = []
    for prefix in prefixes:
        for path in modules(prefix):
            for line, name in imported(path):
                if any(name == f or name.startswith(f + ".") for f in forbidden):
                    found.append(f"{path.relative_to(SRC)}:{line} imports {name}")
    return found


def package_modules(prefix: str) -> frozenset[str]:
    """Every module below the package ``prefix`` (not its ``__init__``, which forbidden
    would forbid the whole package)."""
    return frozenset(module_name(p) for p in modules(prefix)) - {prefix}


def test_every_ledger_module_is_in_a_layer() -> None:
    ledger = {module_name(p) for p in modules("clearwall.ledger")} - {"clearwall.ledger"}
    assert ledger - LEDGER_CORE - UPPER_LEDGER == set(), "put the new module in a layer here"
    assert ledger >= LEDGER_CORE | UPPER_LEDGER


@pytest.mark.parametrize(
    ("who", "what"),
    [
        (sorted(LEDGER_CORE), ("clearwall.store", "clearwall.config", *UPPER_LEDGER, *ABOVE)),
        (["clearwall.store"], (*UPPER_LEDGER, *ABOVE)),
        (sorted(UPPER_LEDGER), ("clearwall.store", *ABOVE)),
        # The scheduled upkeep runs without the web app (``serve --web off``).
        (["clearwall.jobs"], ("clearwall.web", "clearwall.cli")),
        # The query log is the data plane's: its records (who asked what) stay in its own
        # files, never in the policy store or on the public log, and need no web app.
        (
            ["clearwall.querylog"],
            (
                "clearwall.store",
                "clearwall.ledger",
                "clearwall.web",
                "clearwall.cli",
                "clearwall.jobs",
            ),
        ),
        # The control plane compiles and publishes; it never serves DNS: it imports no
        # listener, handler or worker (a listener's change never reaches it).
        (
            ["clearwall.control"],
            (
                *sorted(package_modules("clearwall.dnsserver") - DATA_PLANE_UTILITIES),
                "clearwall.web",
                "clearwall.cli",
                "clearwall.xfr",
                "clearwall.querylog",
            ),
        ),
        # The data plane asks the control plane's client for snapshots and knows nothing
        # of how they are made (the compiler process, reuse checks, log reads).
        (
            ["clearwall.dnsserver"],
            tuple(sorted(package_modules("clearwall.control") - {CONTROL_CLIENT})),
        ),
    ],
    ids=["core", "store", "upper ledger", "jobs", "query log", "control", "data plane"],
)
def test_layers_import_only_downwards(who: list[str], what: tuple[str, ...]) -> None:
    assert offences(who, what) == []


ENTRY_TYPES = frozenset(cls.TYPE for cls in entries.EVENT_TYPES)


def test_only_the_entry_model_names_entry_types() -> None:
    """An entry type as a string (``"order-expired"``), or quoted inside one (a substring
    search in entry bytes), outside ``ledger/entries.py``: a reader decoding on its own."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if module_name(path) == "clearwall.ledger.entries":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Constant) or not isinstance(node.value, str | bytes):
                continue
            value = node.value
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
            if text in ENTRY_TYPES or any(f'"{t}"' in text for t in ENTRY_TYPES):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}: {text!r}")
    assert found == [], "decode entries with clearwall.ledger.entries, not by their type"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from clearwall.store import schema", ["clearwall.store.schema"]),
        ("from clearwall.store.db import Store", ["clearwall.store.db"]),
        ("def f():\n    import clearwall.web.app", ["clearwall.web.app"]),
        ("import json", []),
    ],
)
def test_imports_are_read_wherever_they_stand(
    tmp_path: Path, source: str, expected: list[str]
) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert [name for _, name in imported(probe)] == expected
