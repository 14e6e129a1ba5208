"""Pieces of the actor and learner nodes: rate limiting, checkpoints, metric logs, run directories.

The nodes themselves are thin mains in `actors/` and `learners/` that loop over these and the transport.
"""
