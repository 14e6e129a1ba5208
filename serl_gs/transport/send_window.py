"""The actor's protocol state, apart from its socket: a go-back-N send window over sequence numbers.

Each batch gets the next sequence number when it enters the window and stays until a cumulative ack says the
learner took it ("delivered"). Every transmission (batch or ping) gets a transmission number `tx`, which the
learner echoes in its acks, so the window can tell a lost batch from one still on its way:
- an ack from a new learner incarnation (a restart): the new learner has none of it, resend everything;
- an ack whose `tx` is newer than the transmission of the first batch the learner still expects
  (`received`): that batch was lost with a broken connection, resend from it (go back N);
- no ack for a transmitted batch within `ack_timeout_s`: resend from it.
The learner drops what it already has, so the stream arrives complete, in order, exactly once.
`SendWindow` does no I/O and takes no lock; `TransitionClient`'s I/O thread owns it. Before a batch enters
the window it waits in the `PendingBuffer` that `send()` fills (the flow-control policy's data).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np

MIN_GO_BACK_INTERVAL_S = 0.01  # the same go-back from the same seq is not repeated faster than this


class Outgoing:
    """One batch on its way: its frames, and where it stands in the window."""

    __slots__ = (
        "n",
        "specs",
        "buffers",
        "nbytes",
        "param_version",
        "index",
        "dropped_before",
        "seq",
        "last_tx",
        "sent_at",
        "received",
        "part",
    )

    def __init__(self, n: int, specs: list, buffers: list[np.ndarray], nbytes: int, param_version: int) -> None:
        self.n = n  # records
        self.specs = specs
        self.buffers = buffers
        self.nbytes = nbytes
        self.param_version = param_version
        self.index = -1  # the send() call number
        self.dropped_before = 0
        self.seq = -1
        self.last_tx = -1  # -1: not on the wire yet (or queued for a resend)
        self.sent_at = 0.0
        self.received = False  # the current learner incarnation has it
        self.part: tuple[int, int] | None = None  # (index, count) within one actor step, when split


@dataclass(frozen=True)
class AckOutcome:
    freed: int  # batches the ack confirmed delivered (they left the window)
    freed_records: int
    learner_restarted: bool  # a new incarnation after an earlier one (not the first contact)


class SendWindow:
    def __init__(self) -> None:
        self.in_flight: dict[int, Outgoing] = {}  # seq -> batch, in seq order
        self.to_send: collections.deque[int] = collections.deque()  # seqs awaiting (re)transmission
        self.next_seq = 0
        self.next_tx = 0
        self.incarnation: int | None = None  # the learner process the acks come from
        self._last_go_back = (-1, 0.0)

    def __len__(self) -> int:
        return len(self.in_flight)

    def base(self) -> int:
        """The lowest unconfirmed seq: the learner may treat every seq below it as delivered."""
        return next(iter(self.in_flight)) if self.in_flight else self.next_seq

    def admit(self, out: Outgoing) -> None:
        out.seq = self.next_seq
        self.next_seq += 1
        self.in_flight[out.seq] = out
        self.to_send.append(out.seq)

    def next_to_send(self) -> Outgoing | None:
        """The next batch to put on the wire (its header takes `base()` and `next_tx`), or None."""
        while self.to_send:
            out = self.in_flight.get(self.to_send[0])
            if out is not None:
                return out
            self.to_send.popleft()  # confirmed since it was queued for a resend
        return None

    def sent(self, out: Outgoing, now: float) -> bool:
        """Records that `out` (from `next_to_send`) went out as transmission `next_tx`; True for a resend."""
        resend = out.sent_at > 0
        out.last_tx = self.next_tx
        out.sent_at = now
        out.received = False
        self.next_tx += 1
        self.to_send.popleft()
        return resend

    def ping_sent(self) -> None:
        """A ping went out as transmission `next_tx`."""
        self.next_tx += 1

    def on_ack(self, incarnation: int, received: int, delivered: int, tx: int, now: float) -> AckOutcome:
        """An ack: every seq below `delivered` was taken, below `received` arrived; `tx` is the newest
        transmission the learner handled since its last ack (-1: none)."""
        restarted = incarnation != self.incarnation
        learner_restarted = restarted and self.incarnation is not None
        freed = freed_records = 0
        while self.in_flight:
            seq = next(iter(self.in_flight))
            if seq >= delivered:
                break
            freed_records += self.in_flight.pop(seq).n
            freed += 1
        self.incarnation = incarnation
        for seq, out in self.in_flight.items():
            if seq >= received:
                break
            out.received = True
        outcome = AckOutcome(freed, freed_records, learner_restarted)
        if not self.in_flight:
            return outcome
        if restarted:  # the new learner has none of it
            for out in self.in_flight.values():
                out.received = False
            self.go_back(next(iter(self.in_flight)), now, force=True)
        elif tx >= 0 and received in self.in_flight:
            # The learner handled transmission `tx` but still expects `received`: if we sent that batch
            # before `tx`, it was lost (a broken connection). If we resent it since, wait for it.
            first_missing = self.in_flight[received]
            if 0 <= first_missing.last_tx < tx:
                self.go_back(received, now)
        return outcome

    def go_back(self, from_seq: int, now: float, *, force: bool = False) -> None:
        """Queues every batch from `from_seq` on for retransmission, in order."""
        last_seq, last_time = self._last_go_back
        if not force and last_seq == from_seq and now - last_time < MIN_GO_BACK_INTERVAL_S:
            return
        self._last_go_back = (from_seq, now)
        self.to_send = collections.deque(seq for seq in self.in_flight if seq >= from_seq)
        for seq in self.to_send:
            self.in_flight[seq].last_tx = -1

    def check_timeout(self, now: float, ack_timeout_s: float) -> bool:
        """Goes back from the oldest transmitted batch the learner has not confirmed receiving within
        `ack_timeout_s`; True if it did (the caller should ping to learn where the learner stands)."""
        for seq, out in self.in_flight.items():
            if out.received or out.last_tx < 0:
                continue
            if now - out.sent_at > ack_timeout_s:
                self.go_back(seq, now, force=True)
                return True
            return False  # only the oldest unconfirmed batch matters
        return False


class PendingBuffer:
    """Batches `send()` queued that have not entered the window yet, oldest first; no lock (the client's).

    Full at `max_batches` while the learner is connected (its credits pace the actor); while it is unreachable
    the buffer grows up to `away_bytes`, so the actor keeps acting through a learner restart.
    """

    def __init__(self, max_batches: int, away_bytes: int) -> None:
        self.max_batches, self.away_bytes = max_batches, away_bytes
        self._items: collections.deque[Outgoing] = collections.deque()
        self.bytes = 0
        self._next_index = 0

    def __len__(self) -> int:
        return len(self._items)

    def full(self, nbytes: int, connected: bool) -> bool:
        if len(self._items) < self.max_batches:
            return False
        return connected or self.bytes + nbytes > self.away_bytes

    def append(self, out: Outgoing) -> bool:
        """Queues `out` as the next send() call; True if the buffer was empty (the I/O thread may be idle)."""
        out.index = self._next_index
        self._next_index += 1
        was_empty = not self._items
        self._items.append(out)
        self.bytes += out.nbytes
        return was_empty

    def popleft(self) -> Outgoing:
        out = self._items.popleft()
        self.bytes -= out.nbytes
        return out

    def drop_oldest(self, newcomer: Outgoing) -> Outgoing:
        """overflow="drop_oldest": drops the oldest batch; the next one (or `newcomer`) records the hole."""
        dropped = self.popleft()
        heir = self._items[0] if self._items else newcomer
        heir.dropped_before += dropped.dropped_before + 1
        return dropped
