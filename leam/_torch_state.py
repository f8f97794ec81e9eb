"""Leave a user's model as it was found: every module's train/eval mode and every ``requires_grad``.

A module's mode and flags are shared by every thread that uses it, and so are its forward hooks; so every
leam call that sets them (``preserved_state``) or hooks the module holds the module's own lock
(``net_lock``): calls from several threads on the same net take turns, each finds the net as its caller
left it and sees only its own forward. Calls on different nets run side by side.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

_LOCKS: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def net_lock(net: nn.Module) -> threading.RLock:
    """The re-entrant lock of ``net`` (one per module object, made on first use, gone with the module)."""
    with _LOCKS_LOCK:
        lock = _LOCKS.get(net)
        if lock is None:
            lock = _LOCKS[net] = threading.RLock()
        return lock


@contextmanager
def preserved_state(net: nn.Module, eval_mode: bool = True, freeze: bool = False) -> Iterator[nn.Module]:
    """Within the block ``net`` is in eval mode (if ``eval_mode``) with frozen parameters (if
    ``freeze``), and this thread holds ``net_lock(net)``; afterwards each module's own mode and each
    parameter's flag are restored, errors (``KeyboardInterrupt`` too) included."""
    with net_lock(net):
        modes = [(m, m.training) for m in net.modules()]
        flags = [(p, p.requires_grad) for p in net.parameters()]
        try:
            if eval_mode:
                net.eval()
            if freeze:
                for p, _ in flags:
                    p.requires_grad_(False)
            yield net
        finally:
            for m, training in modes:
                m.training = training
            for p, flag in flags:
                p.requires_grad_(flag)
