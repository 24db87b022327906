"""Fault injection: the next N calls to a route fail the way Google's front ends fail."""

from __future__ import annotations

import threading
from dataclasses import dataclass

ROUTES = ("sts", "iam", "realm")
KINDS = ("503", "500", "429", "reset", "slow")


@dataclass
class Fault:
    kind: str
    remaining: int
    delay: float | None = None
    retry_after: int | None = None


class Faults:
    def __init__(self):
        self._lock = threading.Lock()
        self._queue: dict[str, list[Fault]] = {route: [] for route in ROUTES}

    def inject(self, route: str, kind: str, count: int = 1, delay: float | None = None,
               retry_after: int | None = None) -> None:
        if route not in ROUTES:
            raise ValueError(f"route must be one of {ROUTES}")
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}")
        if kind == "slow" and delay is None:
            raise ValueError("a slow fault needs a delay")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._queue[route].append(Fault(kind, count, delay, retry_after))

    def take(self, route: str) -> Fault | None:
        """The fault for this call, if any; consumes one of its remaining uses."""
        with self._lock:
            queue = self._queue.get(route)
            if not queue:
                return None
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining == 0:
                queue.pop(0)
            return fault

    def clear(self) -> None:
        with self._lock:
            for queue in self._queue.values():
                queue.clear()
