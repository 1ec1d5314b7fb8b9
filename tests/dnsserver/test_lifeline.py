"""The parent-death signal: armed in the child, and a child already orphaned exits at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from dnsserver.gateways import alive, wait_for

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from clearwall.dnsserver.lifeline import die_with_parent
    parent = os.getppid() if sys.argv[1] == "mine" else int(sys.argv[1])
    print("armed" if die_with_parent(parent) else "unarmed", flush=True)
    time.sleep(600)
    """
)


@pytest.mark.parametrize(
    ("parent", "expected"), [("mine", "armed\n"), (str(os.getpid() + 10_000_000), "")]
)
def test_a_child_checks_its_parent_after_arming(parent: str, expected: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, parent], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == expected
        if not expected:  # its parent was not the one that started it: it left at once
            assert proc.wait(10) == 1
    finally:
        proc.kill()
        proc.wait()


def test_the_child_dies_with_its_parent() -> None:
    # An intermediate parent starts the child, reports its pid, then is killed.
    middle = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import subprocess, sys, time
            child = subprocess.Popen([sys.executable, "-c", {CHILD!r}, "mine"],
                                     stdout=subprocess.PIPE, text=True)
            assert child.stdout.readline() == "armed\\n"
            print(child.pid, flush=True)
            time.sleep(600)
        """)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert middle.stdout is not None
    child = int(middle.stdout.readline())
    try:
        os.kill(middle.pid, signal.SIGKILL)
        middle.wait()
        wait_for(lambda: not alive(child), 5, "the child to die")
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
