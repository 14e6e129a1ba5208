"""The learner's demo buffer (RLPD, serl_gs.demos.mixing): loaded at start, fed by interventions, mixed into batches.

`LearnerDemos` is one part of `serl_gs.nodes.learner.Learner` (a mixin: the attributes it uses are made in
`Learner.__init__`). `self.demos` is None, or a `DemoBuffer` of the same record spec as the replay.

Why every mixed batch holds the configured share. `LearnerConfig` refuses a `demo_ratio` that rounds to no demo
or no online transition at its batch size, and `_mixed_sample` draws exactly `demo_count(batch_size,
demo_ratio)` transitions of each minibatch from the demo buffer and the rest from the replay, each with its
n-step target computed inside its own buffer (a demo's return never runs into an actor's episode). Batches are
mixed only once the demo buffer holds a transition: a learner without demo files trains online until the first
intervened record arrives. Which buffer a restart reads is `_load_demos`'s: the saved one when the replay was
restored with it (it already holds the files' episodes and the interventions), else the files'.
"""

from __future__ import annotations

import dataclasses
import logging

import jax

from serl_gs.data.batch import Batch
from serl_gs.data.replay import ReplayBuffer
from serl_gs.data.saving import existing_directory
from serl_gs.demos.mixing import DemoBuffer, demo_count, mixed_sample
from serl_gs.nodes.learner_checkpoint import DEMO_REPLAY_DIR

log = logging.getLogger(__name__)


class LearnerDemos:
    """The demo buffer's life in a learner: `_load_demos`, `_new_demo_buffer`, `_mixed_sample`.

    Reads the learner's config, run_dir, replay, demos, obs_spec, action_dim and updates_per_call."""

    def _load_demos(self, resumed: bool) -> DemoBuffer | None:
        """The demo buffer: the one saved with the restored replay, else the files' (checked against this
        learner's spec first), else None until an intervened record arrives."""
        c = self.config
        saved = existing_directory(self.run_dir / DEMO_REPLAY_DIR)
        if resumed and saved is not None:
            demos = DemoBuffer(ReplayBuffer.restore(saved), action_limit=c.demo_action_limit)
            log.info("resumed demo buffer: %s", demos.replay.stats())
        elif c.demo_paths:
            demos = DemoBuffer.from_files(c.demo_paths, self.replay.spec, self.replay.config, c.demo_capacity,
                                          self.obs_spec, self.action_dim, c.env.task(),
                                          c.demo_action_limit)  # fmt: skip
            episodes = sum(f.episodes for f in demos.files)
            log.info("demos: %d files, %d episodes, %d transitions; each batch %d demo + %d online; actions "
                     "clipped to +-%g", len(demos.files), episodes, demos.num_transitions, self._demo_count(),
                     c.agent.batch_size - self._demo_count(), c.demo_action_limit)  # fmt: skip
        else:
            return None
        return demos

    def _new_demo_buffer(self) -> DemoBuffer:
        """An empty demo buffer for interventions, made at the first one when no demo files were given."""
        config = dataclasses.replace(self.replay.config, capacity=max(2, self.config.demo_capacity))
        return DemoBuffer(ReplayBuffer(self.replay.spec, config), action_limit=self.config.demo_action_limit)

    def _demo_count(self) -> int:
        return demo_count(self.config.agent.batch_size, self.config.demo_ratio)

    def _mixed_sample(self, key: jax.Array) -> Batch:
        """`updates_per_call * critic_actor_ratio` minibatches, stacked: demo + online parts, concatenated."""
        agent = self.config.agent
        return mixed_sample(self.replay, self.demos.replay, key, agent.batch_size,
                            self.updates_per_call * agent.critic_actor_ratio, self.config.demo_ratio, agent.n_step,
                            agent.discount)  # fmt: skip
