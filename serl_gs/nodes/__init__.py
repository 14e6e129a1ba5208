"""The actor and learner nodes as library code, and their pieces.

`learner` (LearnerConfig, Learner) and `actor` (ActorConfig, run_actor) are the nodes; `adder` is the actor's
data path, `env_spec` what every node agrees on about its env, `resume` the learner's crash-safe save and
restore (over `checkpoint` and `receive_log`), `rate_limiter`, `metrics_log`, `run_dir` and `evaluation` the
rest. The entry points in `actors/` and `learners/` only turn flags into these configs (`cli`).
"""
