"""The learner node's config: its components' configs, nested, plus the loop's own settings.

Every field is checked once, here, with the bad value named: a learner built from a `LearnerConfig` never
meets an impossible combination later (a demo share that leaves no online transition, a fused call longer
than the rate limiter lets the learner run ahead)."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from serl_gs.agents.config import AgentConfig
from serl_gs.data.replay import ReplayConfig
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from serl_gs.transport.config import LearnerTransportConfig


@dataclasses.dataclass(frozen=True)
class LearnerConfig:
    """The learner's components' configs, nested, plus the loop's own settings."""

    env: EnvSpec = EnvSpec()
    agent: AgentConfig = AgentConfig()
    replay: ReplayConfig = ReplayConfig()
    rate: RateLimiterConfig = RateLimiterConfig()  # rate.min_inserts is the flag --training_starts
    transport: LearnerTransportConfig = LearnerTransportConfig()
    run_dir: str = "runs/default"
    publish_every: int = 20  # updates
    checkpoint_every: int = 1000  # updates
    keep_checkpoints: int = 3
    save_replay: bool = True  # with each checkpoint, so a restarted learner resumes with its data
    max_updates: int = 0  # stop after this many updates (0 = never)
    max_seconds: float = 0.0  # stop after this long (0 = never)
    stop_success: float = 0.0  # stop once training success over the last `success_window` episodes reaches it
    # Stop once the mean training-episode return (the actors' stochastic policy) over the last `success_window`
    # finished episodes reaches it (0 = off): the progress bound of tasks that report no `success`.
    stop_return: float = 0.0
    success_window: int = 64  # finished episodes (all actors) in the training-success and -return windows
    # What `stop_success` / `stop_return` measure: "training", the exploring policy's episodes; "eval", the last
    # `eval_window` episodes of the actors' eval envs (ActorConfig.eval_envs: the policy's mean, the policy that is
    # checkpointed and evaluated). With "eval", an actor without eval envs never fills the window.
    stop_on: Literal["training", "eval"] = "training"
    eval_window: int = 8  # finished eval-env episodes (all actors) in the eval success and return windows
    # Updates per jitted call; 0 = auto: publish_every for state agents (a call ends where a publish falls),
    # 1 where the update is unrolled (pixel agents on a CPU: K copies of the conv update would take long to
    # compile).
    updates_per_call: int = 0
    # Devices the update spreads over (data parallel, serl_gs.agents.sharding): 0 = auto, every GPU or else one.
    learner_devices: int = 0
    seed: int = 0
    log_every_s: float = 10.0
    use_wandb: bool = False
    # RLPD (serl_gs.demos.mixing): demo files (serl_gs.demos.dataset) in a second replay; each batch draws
    # round(batch_size * demo_ratio) transitions from it and the rest online. Intervened records join it too.
    demo_paths: tuple[str, ...] = ()
    demo_ratio: float = 0.5
    demo_capacity: int = 50_000  # records of room in the demo buffer for intervened records (beyond the files')
    # Demo-buffer actions clipped into [-limit, limit] (serl_gs.demos.mixing: experts act at +-1, outside what a
    # tanh policy produces); 1 = as recorded.
    demo_action_limit: float = 1.0

    def __post_init__(self):
        if self.rate.min_inserts < 1:
            raise ValueError(f"training_starts (rate.min_inserts) must be >= 1, got {self.rate.min_inserts}")
        for name in ("publish_every", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_updates < 0 or self.max_seconds < 0:
            raise ValueError(f"max_updates and max_seconds must be >= 0, got {self.max_updates}, {self.max_seconds}")
        if not 0.0 <= self.stop_success <= 1.0:
            raise ValueError(f"stop_success must be in [0, 1] (0 = off), got {self.stop_success}")
        if not math.isfinite(self.stop_return) or self.stop_return < 0:
            raise ValueError(f"stop_return must be a finite return >= 0 (0 = off), got {self.stop_return}")
        if self.success_window < 1 or self.eval_window < 1:
            raise ValueError(f"success_window and eval_window must be >= 1, got {self.success_window}, "
                             f"{self.eval_window}")  # fmt: skip
        if self.stop_on not in ("training", "eval"):
            raise ValueError(f"stop_on must be 'training' or 'eval', got {self.stop_on!r}")
        if self.updates_per_call < 0:
            raise ValueError(f"updates_per_call must be >= 0 (0 = auto), got {self.updates_per_call}")
        if isinstance(self.demo_paths, str):
            raise ValueError(f"demo_paths must be a tuple of paths, got the string {self.demo_paths!r}")
        if not 0.0 < self.demo_ratio < 1.0:
            raise ValueError(f"demo_ratio must be in (0, 1), got {self.demo_ratio}")
        if not 0 < round(self.agent.batch_size * self.demo_ratio) < self.agent.batch_size:
            raise ValueError(
                f"demo_ratio {self.demo_ratio} of batch_size {self.agent.batch_size} leaves no demo or no online "
                "transition in a batch"
            )
        if not 0.0 < self.demo_action_limit <= 1.0:
            raise ValueError(f"demo_action_limit must be in (0, 1] (1 = as recorded), got {self.demo_action_limit}")
        if self.demo_capacity < 0:
            raise ValueError(f"demo_capacity must be >= 0, got {self.demo_capacity}")
        if self.learner_devices < 0:
            raise ValueError(f"learner_devices must be >= 0 (0 = auto), got {self.learner_devices}")
        if self.updates_per_call > 2 * self.rate.tolerance:
            # A call needs the learner `updates_per_call` ahead; past 2 x tolerance learner and actors could both wait.
            raise ValueError(
                f"updates_per_call {self.updates_per_call} exceeds 2 x the rate limiter's tolerance "
                f"({self.rate.tolerance})"
            )
