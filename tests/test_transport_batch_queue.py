"""The queue of accepted batches waiting for the learner (serl_gs.transport.batch_queue), without sockets."""

from __future__ import annotations

import numpy as np

from serl_gs.transport.batch_queue import BatchHeader, BatchQueue, TransitionBatch
from serl_gs.transport.streams import Stream


def batch(stream: Stream, seq: int, n: int = 2, nbytes: int = 100) -> TransitionBatch:
    header = BatchHeader(stream.actor_id, stream.session, seq, seq, 0, 0, n, nbytes, 0.0)
    return TransitionBatch(header, {"env_index": np.arange(n)})


def test_the_queue_keeps_arrival_order_and_its_totals():
    a, b = Stream("a", 1, 0, 0.0), Stream("b", 1, 0, 0.0)
    q = BatchQueue()
    q.append(a, batch(a, 0))
    q.append(b, batch(b, 0, n=3, nbytes=50))
    q.append(a, batch(a, 1))
    assert (len(q), q.records, q.bytes) == (3, 7, 250)
    first = q.popleft()
    assert (first.stream, first.seq) == (a, 0) and (q.records, q.bytes) == (5, 150)


def test_dropping_a_stream_keeps_the_others_and_says_how_far_it_went():
    a, b = Stream("a", 1, 0, 0.0), Stream("b", 1, 0, 0.0)
    q = BatchQueue()
    for seq in range(3):
        q.append(a, batch(a, seq))
    q.append(b, batch(b, 0, n=3, nbytes=50))
    assert q.drop_stream(a) == (2, 3)
    assert (len(q), q.records, q.bytes) == (1, 3, 50) and q.popleft().stream is b
    assert q.drop_stream(a) == (-1, 0)
