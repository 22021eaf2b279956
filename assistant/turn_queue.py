"""First come, first served access to the model shared by every browser tab and API client.

`slots` turns run at once: 1 for the in-process model; many for a remote server, which batches them itself.
A waiting turn knows its place, can leave at once (Stop, closed page), and holds nothing meanwhile.
Knows nothing of models, storage or the UI.
"""

from __future__ import annotations

import threading


class TurnQueue:
    def __init__(self, slots: int = 1) -> None:
        self._changed = threading.Condition()
        self._tickets: list[Ticket] = []  # the first `slots` ones are answering
        self.slots = slots

    def join(self) -> Ticket:
        ticket = Ticket(self)
        with self._changed:
            self._tickets.append(ticket)
        return ticket

    def __len__(self) -> int:
        with self._changed:
            return len(self._tickets)


    def _place(self, ticket: Ticket) -> int:
        with self._changed:
            return max(0, self._tickets.index(ticket) - self.slots + 1) if ticket in self._tickets else 0

    def _wait(self, ticket: Ticket, timeout: float | None) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: ticket not in self._tickets[self.slots :], timeout)

    def _leave(self, ticket: Ticket) -> None:
        with self._changed:
            if ticket in self._tickets:
                self._tickets.remove(ticket)
                self._changed.notify_all()


class Ticket:
    """One turn's place in the queue; `release` (idempotent) hands the model on or leaves the queue."""

    def __init__(self, queue: TurnQueue):
        self._queue = queue

    @property
    def place(self) -> int:
        """How many turns are ahead of this one (0: it holds the model)."""
        return self._queue._place(self)

    def wait(self, timeout: float | None = None) -> bool:
        """True once this turn holds the model."""
        return self._queue._wait(self, timeout)

    def release(self) -> None:
        self._queue._leave(self)
