"""The network queue between actors and the learner, on ZeroMQ. No pickle anywhere on the wire.

Learner side (binds 127.0.0.1 unless `LearnerTransportConfig.bind` says otherwise)::

    cfg = LearnerTransportConfig(bind="0.0.0.0", auth=AuthConfig(secret_file="~/.serl_gs/secret"))
    with TransitionServer(cfg) as server, ParamPublisher(cfg) as publisher:
        publisher.publish(pack_policy(agent_config, obs_spec, action_dim, params), version=0)
        while training:
            batch = server.get(timeout=1.0, ack=False)   # TransitionBatch(header, arrays) or None
            if batch is not None:
                replay.insert(batch.header, batch.arrays)
                server.ack(batch.header)                  # stored: the actor may forget it
            server.set_credits(rate_limiter.credits())    # 0 pauses every actor
            ...
            publisher.publish(pack_policy(agent_config, obs_spec, action_dim, params), version=step)
            log(server.stats(current_param_version=step), publisher.stats())

Actor side::

    cfg = ActorTransportConfig(actor_id="gpu0", host="learner-host", auth=AuthConfig(secret_file=...))
    with TransitionClient(cfg) as client, ParamSubscriber(cfg) as subscriber:
        update = subscriber.wait(timeout=60)         # a late joiner gets the current params at once
        policy = unpack_policy(update.data)          # serl_gs.agents.payload
        while running:
            client.send(record_arrays, param_version=update.version)   # returns at once (see flow control)
            if (newer := subscriber.poll()) is not None:                 # latest only, never blocks
                update, policy = newer, unpack_policy(newer.data)

Records: a flat dict of numpy arrays sharing the leading dim n (one record per env), with
"env_index" int [n] required; names, dtypes (bool, ints, floats) and shapes are otherwise free.
Each batch header carries actor id, a random per-process session, a sequence number, the param
version that acted, and `dropped_before` (records dropped under overflow="drop_oldest").
`send()` does not copy: read-only arrays (jax.device_get) go as they are, arrays that own their
memory go as they are and become read-only (writing into one later raises instead of changing a
batch in flight), views are copied; `copy_on_send=True` always copies. On the learner, arrays are
read-only views of the received frames.

Guarantees:
- Delivery: each batch reaches `get()` exactly once and in order per (actor_id, session), across
  network hiccups and learner restarts: an actor keeps every batch until the learner acknowledges
  it (at `get()`, or at `ack()` with `get(ack=False)`), resends unacknowledged ones after a restart,
  and the learner drops duplicates by sequence number. After a learner *crash*, pass the positions
  saved with its replay (`server.positions()`) back as `TransitionServer(cfg, resume_positions=...)`
  so batches it stored but had not acknowledged yet are not taken twice.
- Flow control: credits bound what each actor has outstanding; a full actor buffer blocks `send()`
  or drops the oldest batch (counted), per `ActorTransportConfig.overflow`. Nobody deadlocks.
- Parameters: PUB/SUB with CONFLATE on both ends (a slow actor skips versions) plus a snapshot
  request for late joiners.
- Security: `AuthConfig.secret_file` turns on CURVE (encryption + authentication); malformed,
  oversized, pickled or unauthenticated input is dropped and counted (`stats()["rejected"]`),
  logged at most every `reject_log_interval_s`, and never crashes the learner.
- Lifecycle: every socket has timeouts; `close()` joins its thread; threads are daemons, so Ctrl-C
  and the end of `main` exit promptly; reconnection is automatic.

Counters for logging: `TransitionServer.stats(current_param_version)` (records, batches and
bytes in, duplicates dropped, rejected by reason, queue depth, credits, per-actor param lag),
`TransitionClient.stats()`, `ParamPublisher.stats()`, `ParamSubscriber.stats()`, and
`fetch_learner_stats(actor_config)` to ask a running learner over the network.

Public API: TransitionServer, TransitionBatch, BatchHeader, StreamPosition, TransitionClient,
ParamPublisher, ParamSubscriber, ParamUpdate, fetch_learner_stats, LearnerTransportConfig,
ActorTransportConfig, AuthConfig, port_layout, write_secret_file, TransportError, ProtocolMismatch,
BatchRejected, AddressInUse, PROTOCOL_VERSION.

Modules: config (the two configs, the port rule), wire (the format), streams (the learner's protocol
state: stream table, outcome ladder), batch_queue (what waits for get()), send_window (the actor's
protocol state: go-back-N window), server and client (their sockets and threads), params and subscriber
(the parameter broadcast), _io_thread and _sockets (socket plumbing both ends share), auth (CURVE),
stats_request.
"""

from serl_gs.transport.auth import write_secret_file
from serl_gs.transport.batch_queue import BatchHeader, TransitionBatch
from serl_gs.transport.client import TransitionClient
from serl_gs.transport.config import ActorTransportConfig, AuthConfig, LearnerTransportConfig, port_layout
from serl_gs.transport.errors import AddressInUse, BatchRejected, ProtocolMismatch, TransportError
from serl_gs.transport.params import ParamPublisher, ParamUpdate
from serl_gs.transport.server import TransitionServer
from serl_gs.transport.stats_request import fetch_learner_stats
from serl_gs.transport.streams import StreamPosition
from serl_gs.transport.subscriber import ParamSubscriber
from serl_gs.transport.wire import PROTOCOL_VERSION

__all__ = [
    "AddressInUse",
    "PROTOCOL_VERSION",
    "ActorTransportConfig",
    "AuthConfig",
    "BatchHeader",
    "BatchRejected",
    "LearnerTransportConfig",
    "ParamPublisher",
    "ParamSubscriber",
    "ParamUpdate",
    "ProtocolMismatch",
    "StreamPosition",
    "TransitionBatch",
    "TransitionClient",
    "TransitionServer",
    "TransportError",
    "fetch_learner_stats",
    "port_layout",
    "write_secret_file",
]
