"""The learner's protocol state, apart from its sockets: one stream per (actor, session) and what it has seen.

`StreamTable` decides what happens to each batch (`offer`: the outcome ladder), moves the acknowledged
position (`acknowledge`: cumulative), and says which acks are due and what they hold (`due_acks`). It does no
I/O and takes no lock: `TransitionServer` holds its own lock around every call and sends what comes out.

What a stream costs a peer: it exists only once a well-formed batch arrived (`offer`); a ping from an unknown
stream is answered without state (`ping` returns None and the server acks from the ping alone). When the table
is full, a new stream takes the place of a refused one (its actor was told why), else of the stream idle
longest with nothing outstanding, once idle `stream_evict_idle_s`; `expire` drops refused streams after that
long and other idle ones after `stream_forget_s`. So junk and pings cannot fill it, and a flood of well-formed
batches from new sessions only delays a real actor, which retries with backoff on `too_many_actors`.

Outcome ladder of `offer`, first match wins:
    too_many_actors   a new stream, and `max_actors` streams are tracked (none may give its place yet)
    refused           the learner refused the stream's data (`TransitionServer.refuse`): no ack, a 'rejected'
    duplicate         seq below the stream's next expected seq: taken already (e.g. a resend after a restart)
    out_of_order      seq above it: a predecessor was lost on a broken connection; the actor resends from there
    over_credit       the stream already holds `max_credits_per_actor` unacknowledged batches
    accepted          the next batch of the stream: the caller queues it
Every outcome but too_many_actors answers with an ack, which tells the actor where the stream stands.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["accepted", "duplicate", "out_of_order", "over_credit", "too_many_actors", "refused"]
StreamKey = tuple[str, int]  # (actor_id, session)


@dataclass(frozen=True)
class StreamPosition:
    """Where a stream stands: every seq below `next_seq` was acknowledged. Checkpoint these
    with the replay and pass them back (`resume_positions`) so a restarted learner drops resends of
    batches it already has, even after a crash."""

    actor_id: str
    session: int
    next_seq: int


class Stream:
    __slots__ = (
        "actor_id",
        "session",
        "next_seq",
        "delivered",
        "unacked",
        "ack_tx",
        "routing_id",
        "last_seen",
        "batches",
        "records",
        "bytes",
        "param_version",
        "refused",
    )

    def __init__(self, actor_id: str, session: int, start: int, now: float) -> None:
        self.actor_id = actor_id
        self.session = session
        self.next_seq = start  # next seq to accept
        self.delivered = start  # every seq below was acknowledged (taken by get(), or ack())
        self.unacked = 0  # received and not acknowledged yet: queued, or taken with ack=False
        self.ack_tx = -1  # highest tx handled since the last ack we sent (-1: none)
        self.routing_id: bytes | None = None
        self.last_seen = now
        self.batches = 0
        self.records = 0
        self.bytes = 0
        self.param_version = -1
        self.refused: tuple[str, str] | None = None  # (reason, detail): the learner refused this stream's data

    @property
    def key(self) -> StreamKey:
        return (self.actor_id, self.session)


class StreamTable:
    """Every actor stream the learner tracks; plain state, driven by `TransitionServer` under its lock."""

    def __init__(
        self,
        *,
        max_actors: int,
        max_credits_per_actor: int,
        stream_forget_s: float,
        stream_evict_idle_s: float = 10.0,
        resume_positions: Iterable[StreamPosition] = (),
        now: float = 0.0,
    ) -> None:
        self.max_actors = max_actors
        self.max_credits_per_actor = max_credits_per_actor
        self.stream_forget_s = stream_forget_s
        self.stream_evict_idle_s = stream_evict_idle_s
        self.evicted = 0  # streams that gave their place to a new one
        self.expired = 0  # streams dropped by `expire`
        self.streams: dict[StreamKey, Stream] = {}
        self.ack_due: set[StreamKey] = set()
        self.credit_broadcast = False  # every stream gets an ack at the next `due_acks`
        for pos in resume_positions:
            if not isinstance(pos, StreamPosition) or pos.next_seq < 0:
                raise ValueError(f"resume_positions must hold StreamPosition(next_seq >= 0), got {pos!r}")
            self.streams[(pos.actor_id, pos.session)] = Stream(pos.actor_id, pos.session, pos.next_seq, now)

    def stream_for(
        self, actor_id: str, session: int, base: int, routing_id: bytes, now: float, *, create: bool = True
    ) -> Stream | None:
        """Finds (or, with `create`, makes) a stream; None when unknown and not made (module doc)."""
        key = (actor_id, session)
        stream = self.streams.get(key)
        if stream is None:
            if not create or (len(self.streams) >= self.max_actors and not self._make_room(now)):
                return None
            stream = self.streams[key] = Stream(actor_id, session, base, now)
        # The actor vouches that every seq below `base` was delivered (maybe by an earlier learner).
        stream.delivered = max(stream.delivered, base)
        stream.next_seq = max(stream.next_seq, base)
        stream.routing_id = routing_id
        stream.last_seen = now
        return stream

    def _may_go(self, stream: Stream, now: float, idle_s: float) -> bool:
        """Nothing of the stream is queued, held or owed an ack, and it has been idle `idle_s`."""
        return stream.unacked == 0 and stream.key not in self.ack_due and now - stream.last_seen >= idle_s

    def _make_room(self, now: float) -> bool:
        """Frees one place: a refused stream, else the longest idle one that may go (module doc)."""
        streams = self.streams.items()
        refused = [(s.last_seen, k) for k, s in streams if s.refused is not None and self._may_go(s, now, 0)]
        idle = refused or [
            (s.last_seen, k) for k, s in self.streams.items() if self._may_go(s, now, self.stream_evict_idle_s)
        ]
        if not idle:
            return False
        del self.streams[min(idle)[1]]
        self.evicted += 1
        return True

    def expire(self, now: float) -> int:
        """Drops refused streams idle `stream_evict_idle_s` and others idle `stream_forget_s`; returns how many."""
        gone = [
            k
            for k, s in self.streams.items()
            if self._may_go(s, now, self.stream_evict_idle_s if s.refused is not None else self.stream_forget_s)
        ]
        for key in gone:
            del self.streams[key]
        self.expired += len(gone)
        return len(gone)

    def refuse(self, stream: Stream, reason: str, detail: str) -> None:
        """The learner cannot use this stream's data: its later batches are answered 'rejected', not queued."""
        stream.refused = (reason, detail)

    def offer(
        self,
        actor_id: str,
        session: int,
        seq: int,
        base: int,
        tx: int,
        routing_id: bytes,
        now: float,
        *,
        num_records: int = 0,
        nbytes: int = 0,
        param_version: int = -1,
    ) -> tuple[Outcome, Stream | None]:
        """Where a received batch goes (module doc); an accepted one is counted as queued and unacknowledged."""
        stream = self.stream_for(actor_id, session, base, routing_id, now)
        if stream is None:
            return "too_many_actors", None
        if stream.refused is not None:
            return "refused", stream
        self.note_tx(stream, tx)
        if seq < stream.next_seq:
            return "duplicate", stream
        if seq > stream.next_seq:
            return "out_of_order", stream
        if stream.unacked >= self.max_credits_per_actor:
            return "over_credit", stream
        stream.next_seq += 1
        stream.unacked += 1
        stream.batches += 1
        stream.records += num_records
        stream.bytes += nbytes
        stream.param_version = param_version
        return "accepted", stream

    def ping(self, actor_id: str, session: int, base: int, tx: int, routing_id: bytes, now: float) -> Stream | None:
        """A ping asks for an ack telling where the stream stands. None: no such stream (a ping makes none), the
        server then acks from the ping alone (`stateless_ack`)."""
        stream = self.stream_for(actor_id, session, base, routing_id, now, create=False)
        if stream is not None:
            self.note_tx(stream, tx)
        return stream

    def note_tx(self, stream: Stream, tx: int) -> None:
        """One ack per stream per turn of the I/O loop answers every message of that turn."""
        stream.ack_tx = max(stream.ack_tx, tx)
        self.ack_due.add(stream.key)

    def acknowledge(self, stream: Stream, seq: int) -> bool:
        """Acknowledges `seq` and every earlier batch of the stream (the actor frees them).

        True when the I/O thread must be woken to send the ack: if acks were already due, a wake-up is pending
        or the I/O thread has not sent them yet (it sends every due ack at the end of each turn).
        """
        if seq < stream.delivered:
            return False
        stream.unacked -= seq + 1 - stream.delivered
        stream.delivered = seq + 1
        wake = not self.ack_due
        self.ack_due.add(stream.key)
        return wake

    def due_acks(self, credits: int, incarnation: int) -> list[tuple[bytes, dict[str, Any]]]:
        """(routing id, ack fields) for every stream owed an ack, then none are owed."""
        if self.credit_broadcast:
            due = list(self.streams.values())
            self.credit_broadcast = False
        else:
            due = [self.streams[k] for k in self.ack_due if k in self.streams]
        self.ack_due.clear()
        acks = []
        for stream in due:
            if stream.routing_id is None:
                continue  # resumed from a checkpoint, not heard from yet
            ack = {
                "session": stream.session,
                "incarnation": incarnation,
                "received": stream.next_seq,
                "delivered": stream.delivered,
                "credits": credits,
                # The newest message handled since the last ack (-1: none, e.g. a delivery or a credit
                # change): the actor checks its older messages against `received`.
                "tx": stream.ack_tx,
            }
            stream.ack_tx = -1
            acks.append((stream.routing_id, ack))
        return acks

    @staticmethod
    def stateless_ack(session: int, base: int, tx: int, credits: int, incarnation: int) -> dict[str, Any]:
        """The ack for a ping of a stream the learner does not track: nothing received beyond what the actor
        vouches for (`base`), this learner's incarnation (a restart makes the actor resend) and its credits."""
        return {
            "session": session,
            "incarnation": incarnation,
            "received": base,
            "delivered": base,
            "credits": credits,
            "tx": tx,
        }

    def positions(self) -> list[StreamPosition]:
        return [StreamPosition(s.actor_id, s.session, s.delivered) for s in self.streams.values()]

    def actor_stats(self, now: float, current_param_version: int | None) -> dict[str, dict[str, Any]]:
        """Per actor id (summed over its sessions): sessions, batches, records, bytes, param version, idle time."""
        actors: dict[str, dict[str, Any]] = {}
        for s in self.streams.values():
            idle_s = round(now - s.last_seen, 3)
            a = actors.setdefault(
                s.actor_id,
                {"sessions": 0, "batches": 0, "records": 0, "bytes": 0, "param_version": -1, "idle_s": idle_s},
            )
            a["sessions"] += 1
            a["batches"] += s.batches
            a["records"] += s.records
            a["bytes"] += s.bytes
            a["idle_s"] = min(a["idle_s"], idle_s)
            if s.batches:
                a["param_version"] = max(a["param_version"], s.param_version)
        if current_param_version is not None:
            for a in actors.values():
                a["param_lag"] = current_param_version - a["param_version"] if a["param_version"] >= 0 else None
        return actors
