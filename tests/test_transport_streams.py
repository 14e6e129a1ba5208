"""The learner's protocol state without sockets (serl_gs.transport.streams): hand-written message sequences."""

from __future__ import annotations

import pytest

from serl_gs.transport.streams import StreamPosition, StreamTable

RID = b"peer-1"


def table(**changes) -> StreamTable:
    kwargs = {"max_actors": 4, "max_credits_per_actor": 2, "stream_forget_s": 60.0, **changes}
    return StreamTable(**kwargs)


def offer(t: StreamTable, seq: int, *, actor="a", session=1, base=0, tx=None, now=0.0, rid=RID):
    return t.offer(actor, session, seq, base, seq if tx is None else tx, rid, now, num_records=3, nbytes=10)[0]


def test_the_outcome_ladder_in_order_duplicates_gaps_and_credit():
    t = table()
    assert offer(t, 0) == "accepted"
    assert offer(t, 0) == "duplicate"  # a resend of what the learner has
    assert offer(t, 2) == "out_of_order"  # seq 1 was lost: the actor must go back to it
    assert offer(t, 1) == "accepted"
    assert offer(t, 2) == "over_credit"  # two unacknowledged batches = max_credits_per_actor
    stream = t.streams[("a", 1)]
    assert (stream.next_seq, stream.unacked, stream.batches, stream.records) == (2, 2, 2, 6)
    t.acknowledge(stream, 0)
    assert offer(t, 2) == "accepted"


def test_acks_are_cumulative_and_carry_where_the_stream_stands():
    t = table(max_credits_per_actor=4)
    for seq in range(3):
        offer(t, seq, tx=10 + seq)
    t.credit_broadcast = False
    stream = t.streams[("a", 1)]
    [(rid, ack)] = t.due_acks(credits=8, incarnation=77)
    assert rid == RID
    assert ack == {"session": 1, "incarnation": 77, "received": 3, "delivered": 0, "credits": 8, "tx": 12}
    assert t.due_acks(credits=8, incarnation=77) == []  # nothing new: no ack
    assert t.acknowledge(stream, 1)  # the first ack due since the last send: wake the I/O thread
    assert not t.acknowledge(stream, 0)  # already covered by the cumulative ack of seq 1
    [(_, ack)] = t.due_acks(credits=0, incarnation=77)
    assert (ack["delivered"], ack["tx"], ack["credits"]) == (2, -1, 0)  # -1: no message handled since
    assert stream.unacked == 1 and t.positions() == [StreamPosition("a", 1, 2)]


def test_a_credit_change_acks_every_stream_heard_from():
    t = table()
    offer(t, 0, actor="a")
    offer(t, 0, actor="b", rid=b"peer-2")
    t.due_acks(8, 1)
    t.credit_broadcast = True
    assert sorted(rid for rid, _ in t.due_acks(0, 1)) == [RID, b"peer-2"]


def test_resumed_positions_drop_what_a_previous_learner_took_and_the_base_moves_them_on():
    t = table(resume_positions=[StreamPosition("a", 1, 5)])
    assert t.due_acks(8, 1) == []  # not heard from yet: no routing id to answer
    assert offer(t, 4) == "duplicate"
    assert offer(t, 5) == "accepted"
    # A new stream whose actor vouches that everything below base 9 was delivered (an earlier learner).
    assert offer(t, 9, session=2, base=9) == "accepted"
    assert t.streams[("a", 2)].delivered == 9
    with pytest.raises(ValueError, match="StreamPosition"):
        table(resume_positions=[StreamPosition("a", 1, -1)])


def test_pings_make_no_stream_and_a_new_stream_takes_the_place_of_a_refused_or_idle_one():
    t = table(max_actors=1, stream_forget_s=600.0, stream_evict_idle_s=10.0)
    assert t.ping("a", 1, 0, 0, RID, now=0.0) is None and not t.streams  # only a well-formed batch makes one
    assert offer(t, 0, actor="a", now=0.0) == "accepted"
    assert offer(t, 0, actor="b", now=100.0) == "too_many_actors"  # "a" still holds an unacknowledged batch
    a = t.streams[("a", 1)]
    t.acknowledge(a, 0)
    assert offer(t, 0, actor="b", now=100.0) == "too_many_actors"  # "a" is owed an ack: it must get it first
    t.due_acks(8, 1)
    assert offer(t, 0, actor="b", now=5.0) == "too_many_actors"  # "a" is idle only 5 s
    assert offer(t, 0, actor="b", now=10.0) == "accepted"  # idle 10 s with nothing outstanding: it gives way
    assert list(t.streams) == [("b", 1)] and t.evicted == 1
    b = t.streams[("b", 1)]
    t.refuse(b, "schema", "another task's records")
    t.acknowledge(b, 0)
    t.due_acks(8, 1)
    assert offer(t, 1, actor="b", now=10.1) == "refused"  # the rest of a refused stream is not queued
    assert offer(t, 0, actor="c", now=10.2) == "accepted"  # a refused stream gives its place at once
    assert list(t.streams) == [("c", 1)] and t.evicted == 2


def test_refused_streams_expire_fast_and_idle_ones_after_stream_forget_s():
    t = table(stream_forget_s=60.0, stream_evict_idle_s=10.0)
    for actor in ("a", "b"):
        offer(t, 0, actor=actor, now=0.0)
        t.acknowledge(t.streams[(actor, 1)], 0)
    t.refuse(t.streams[("b", 1)], "schema", "another task's records")
    t.due_acks(8, 1)
    assert t.expire(now=5.0) == 0
    assert t.expire(now=10.0) == 1 and list(t.streams) == [("a", 1)]
    assert t.expire(now=59.0) == 0 and t.expire(now=60.0) == 1 and not t.streams and t.expired == 2


def test_an_unknown_stream_is_acked_from_the_ping_alone():
    ack = StreamTable.stateless_ack(session=7, base=3, tx=12, credits=8, incarnation=77)
    assert ack == {"session": 7, "incarnation": 77, "received": 3, "delivered": 3, "credits": 8, "tx": 12}


def test_actor_stats_sum_sessions_and_measure_the_param_lag():
    t = table()
    t.offer("a", 1, 0, 0, 0, RID, 0.0, num_records=2, nbytes=5, param_version=3)
    t.offer("a", 2, 0, 0, 0, RID, 1.0, num_records=4, nbytes=7, param_version=6)
    t.ping("a", 2, 1, 1, RID, 2.0)  # a ping of a known stream counts as hearing from it
    stats = t.actor_stats(now=3.0, current_param_version=10)
    assert stats["a"] == {
        "sessions": 2, "batches": 2, "records": 6, "bytes": 12, "param_version": 6, "idle_s": 1.0, "param_lag": 4,
    }  # fmt: skip
    t.offer("b", 1, 0, 0, 0, b"peer-2", 2.0, num_records=2, nbytes=5, param_version=-1)
    assert t.actor_stats(now=3.0, current_param_version=10)["b"]["param_lag"] is None  # no policy acted yet
