# SPDX-License-Identifier: Apache-2.0
"""Graceful stops on SIGTERM and SIGINT for long commands (``lcengine fit``, ``lcengine
optimize``): the first signal asks the work to stop at its next safe boundary, a second SIGINT
aborts at once."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class StopOnSignals:
    """While active (main thread only): the first SIGTERM or SIGINT sets ``stop`` and is
    recorded in ``received``; later SIGTERMs are ignored and a second SIGINT raises
    KeyboardInterrupt at once. The previous handlers come back on exit.

    Args:
        stop: a ``threading.Event`` the work polls.
        received: the signal numbers received (the first one is appended).
        enabled: False: a no-op context.
        command: names the command in the message printed on the first signal.
        boundary: what the work does when it stops, for that message.
    """

    def __init__(
        self,
        stop: Any,
        received: list,
        enabled: bool = True,
        *,
        command: str = "lcengine fit",
        boundary: str = "stopping at the next step boundary and saving a checkpoint",
    ) -> None:
        self.stop, self.received, self.enabled = stop, received, enabled
        self.command, self.boundary = command, boundary
        self.old: dict = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received.append(signum)
        self.stop.set()
        again = " (Ctrl-C again aborts at once)" if signum == signal.SIGINT else ""
        try:  # a raw write: the interrupted code may be inside a buffered write to stderr
            name = signal.Signals(signum).name
            os.write(2, f"[{self.command}] {name}: {self.boundary}{again}\n".encode())
        except OSError:
            pass

    def __enter__(self) -> "StopOnSignals":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                self.old[s] = signal.getsignal(s)
                signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, h in self.old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        self.old = {}


__all__ = ["StopOnSignals"]
