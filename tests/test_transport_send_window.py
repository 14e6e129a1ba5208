"""The actor's go-back-N window without sockets (serl_gs.transport.send_window): hand-written ack sequences."""

from __future__ import annotations

import numpy as np

from serl_gs.transport.send_window import Outgoing, PendingBuffer, SendWindow


def batch(n: int = 2) -> Outgoing:
    return Outgoing(n, [], [np.zeros(n)], 8 * n, param_version=0)


def send_all(w: SendWindow, now: float = 0.0) -> list[tuple[int, int]]:
    """Transmits what the window queues; returns (seq, tx) in wire order."""
    out = []
    while (b := w.next_to_send()) is not None:
        tx = w.next_tx
        w.sent(b, now)
        out.append((b.seq, tx))
    return out


def window_with(k: int) -> SendWindow:
    w = SendWindow()
    w.on_ack(incarnation=1, received=0, delivered=0, tx=-1, now=0.0)  # the answer to the first ping
    for _ in range(k):
        w.admit(batch())
    return w


def test_a_lost_batch_is_resent_once_and_then_awaited():
    w = window_with(3)
    assert send_all(w) == [(0, 0), (1, 1), (2, 2)]
    # The learner got seq 0 and seq 2 (out of order): it handled tx 2 and still expects seq 1.
    w.on_ack(incarnation=1, received=1, delivered=1, tx=2, now=1.0)
    assert list(w.in_flight) == [1, 2] and w.base() == 1
    assert send_all(w, now=1.0) == [(1, 3), (2, 4)]  # go back N: seq 1 and everything after it
    # A late ack from before the resend (tx 2 again) must not trigger another go-back: seq 1 went out as tx 3.
    w.on_ack(incarnation=1, received=1, delivered=1, tx=2, now=1.5)
    assert w.next_to_send() is None
    out = w.on_ack(incarnation=1, received=3, delivered=3, tx=4, now=2.0)
    assert (out.freed, out.freed_records, out.learner_restarted) == (2, 4, False)
    assert len(w) == 0 and w.base() == 3


def test_received_but_not_delivered_batches_wait_for_the_learner_to_take_them():
    w = window_with(2)
    send_all(w)
    out = w.on_ack(incarnation=1, received=2, delivered=0, tx=1, now=1.0)
    assert out.freed == 0 and all(b.received for b in w.in_flight.values())
    assert not w.check_timeout(now=100.0, ack_timeout_s=5.0)  # arrived: no timeout while the learner holds them
    assert w.next_to_send() is None


def test_a_new_learner_incarnation_gets_everything_unconfirmed_again():
    w = window_with(3)
    send_all(w)
    w.on_ack(incarnation=1, received=3, delivered=1, tx=2, now=1.0)
    out = w.on_ack(incarnation=2, received=0, delivered=1, tx=-1, now=2.0)  # the restarted learner's first ack
    assert out.learner_restarted and out.freed == 0
    assert not any(b.received for b in w.in_flight.values())
    assert [seq for seq, _ in send_all(w, now=2.0)] == [1, 2]


def test_no_ack_within_the_timeout_goes_back_from_the_oldest_unconfirmed_batch():
    w = window_with(2)
    send_all(w, now=0.0)
    assert not w.check_timeout(now=4.0, ack_timeout_s=5.0)
    assert w.check_timeout(now=6.0, ack_timeout_s=5.0)
    assert [seq for seq, _ in send_all(w, now=6.0)] == [0, 1]
    assert not w.check_timeout(now=7.0, ack_timeout_s=5.0)  # the resend restarted the clock


def test_go_back_from_the_same_seq_is_not_repeated_within_the_minimum_interval():
    w = window_with(2)
    send_all(w, now=0.0)
    w.go_back(0, now=1.0)
    send_all(w, now=1.0)
    w.go_back(0, now=1.001)  # a burst of acks saying the same thing: one resend is enough
    assert w.next_to_send() is None
    w.go_back(0, now=1.002, force=True)
    assert w.next_to_send().seq == 0


def test_confirmed_batches_queued_for_a_resend_are_skipped():
    w = window_with(2)
    send_all(w)
    w.go_back(0, now=1.0, force=True)
    w.on_ack(incarnation=1, received=1, delivered=1, tx=-1, now=1.0)  # seq 0 confirmed after all
    assert [seq for seq, _ in send_all(w, now=1.0)] == [1]


def test_pings_take_transmission_numbers_and_the_base_follows_the_window():
    w = SendWindow()
    assert (w.base(), w.next_tx) == (0, 0)
    w.ping_sent()
    w.admit(batch())
    assert send_all(w) == [(0, 1)]
    assert w.base() == 0


def test_the_pending_buffer_is_bounded_by_credits_while_connected_and_by_bytes_while_away():
    buffer = PendingBuffer(max_batches=2, away_bytes=100)
    assert buffer.append(batch()) and not buffer.append(batch())  # True only when it was empty
    assert [b.index for b in buffer._items] == [0, 1]
    assert buffer.full(16, connected=True)
    assert not buffer.full(16, connected=False)  # away: up to 100 bytes (32 held)
    assert buffer.full(80, connected=False)
    newcomer = batch()
    dropped = buffer.drop_oldest(newcomer)  # overflow="drop_oldest": the next batch records the hole
    assert dropped.index == 0 and buffer._items[0].dropped_before == 1 and buffer.bytes == 16
    buffer.drop_oldest(newcomer)
    assert newcomer.dropped_before == 2 and len(buffer) == 0  # the heir of an emptied buffer is the newcomer
