"""Parallelism slots: at most ``limit`` steps *work* at once; a waiting step lends its slot.

``mlform apply --parallelism N`` bounds the steps that use the machine at once (training,
feature builds). A step that is only waiting for the shared infrastructure engine (its
``pulumi up`` is batched with other steps' by :class:`~mlform.pulumi_engine.provisioner.
StackProvisioner`) lends its slot for the wait (:meth:`Slots.lend`), so the next ready step
starts meanwhile and can join the same engine run: 50 deployments reach the engine
together and cost one ``pulumi up``, not 50 (see docs/adr/0009-kubernetes-target.md).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Slots:
    """A counting limit with a change signal for the scheduler (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 1)
        self._active = 0
        self._resuming = 0  # lenders waiting to get a slot back go before new steps
        self._cond = threading.Condition()
        self._changed = threading.Event()

    def try_acquire(self) -> bool:
        """Take a slot for a new step when one is free (the scheduler's call)."""
        with self._cond:
            if self._active >= self.limit or self._resuming:
                return False
            self._active += 1
            return True

    def release(self) -> None:
        """Give back a step's slot (the step finished)."""
        with self._cond:
            self._active -= 1
            self._cond.notify_all()
        self.signal()

    @contextmanager
    def lend(self) -> Iterator[None]:
        """Around a wait that uses no machine: another step may start; blocks to get a
        slot back afterwards (steps that finish give theirs back)."""
        self.release()
        try:
            yield
        finally:
            with self._cond:
                self._resuming += 1
                while self._active >= self.limit:
                    self._cond.wait()
                self._resuming -= 1
                self._active += 1

    def working(self) -> int:
        """Steps holding a slot now (at work; not those lending theirs while they wait)."""
        with self._cond:
            return self._active

    def signal(self) -> None:
        """Wake the scheduler (a slot became free or a step finished)."""
        self._changed.set()

    def wait_for_change(self) -> None:
        self._changed.wait()
        self._changed.clear()
