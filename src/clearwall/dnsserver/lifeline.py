"""Children die with the gateway: the parent-death signal, set in each child the server forks.

A compiler or worker outliving a killed ``clearwall serve`` holds memory (a big compile
takes hundreds of MiB) for a result nobody reads, and a stale worker would keep serving
an old policy on the port. Linux delivers a signal chosen by the child when its parent
dies (``prctl(PR_SET_PDEATHSIG)``); the child sets it first thing, then checks that its
parent is still the one that started it, since the parent may have died before the
signal was set (the race ``prctl(2)`` warns about). The signal follows the parent
*thread*: a child must be started by a thread that lives as long as the process
(``policy_source`` starts its compilers from such threads).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent: int, sig: int = signal.SIGKILL) -> bool:
    """Have this process receive ``sig`` when its parent dies; exit at once when the
    parent (pid ``parent``, the process that started this one) is already gone.

    Returns False where the platform has no parent-death signal (not Linux): there a
    child notices its parent's end only through its pipes.
    """
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            err = ctypes.get_errno()
            log.warning("parent-death signal not set: %s", os.strerror(err))
            armed = False
        else:
            armed = True
    else:
        armed = False
    if os.getppid() != parent:
        os._exit(1)  # orphaned before the signal was armed: nobody waits for this child
    return armed
