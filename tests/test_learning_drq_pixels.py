"""DrQ learns CartpoleBalance from pixels only, through the real nodes: a `Learner` and `run_actor` as two threads
of one process (tests/node_threads.py), on OS-picked ports. The actor steps the real pixel vector env (CPU
MuJoCo + the reference 3DGS renderer at 16x16, action repeat 8) and sends single frames; the learner's replay
rebuilds 3-frame stacks, samples 3-step returns under the rate limiter and runs the DrQ update; the actor acts
on stacks with the published policy. The test thread evaluates the learner's current policy every EVAL_EVERY
updates until a deterministic-policy return threshold or the update budget.

400-control-step episodes (50 env steps of 8); return out of 400. Measured over 32 episodes: uniform random
actions score 141 (std 24; 8 per episode mean, so the mean of 8 envs has std ~9), zero actions 291; the
untrained policy scored 121. The threshold, 250, is 12 standard deviations of an 8-episode mean above random and
well above the untrained policy: the policy must have learned from the frames. (Balancing for the whole episode,
~400, is the learning run's job: docs/pixels-cpu.md.) The learner makes one update per 4 transitions
(`utd` 0.25), as the private loop this test replaced did (one step of 8 envs, then 2 updates).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from serl_gs.agents.config import EncoderConfig, cpu_pixel_preset
from serl_gs.data.frame_stack import FrameStacker
from serl_gs.nodes.cli import set_render_threads
from serl_gs.nodes.env_spec import EnvSpec
from serl_gs.nodes.rate_limiter import RateLimiterConfig
from tests.node_threads import learn_through_threads

NUM_ENVS = 8
EPISODE = 400  # control steps
REPEAT = 8
STEPS_PER_EPISODE = EPISODE // REPEAT
FRAMES = 3
THRESHOLD = 250.0
BUDGET = 3_000  # updates
EVAL_EVERY = 200  # updates
RANDOM_STEPS = 320  # env steps, all envs together (40 steps of 8 envs)
UTD = 0.25  # updates per transition
ENV = EnvSpec("serl_gs/CartpoleBalance-v0", obs_mode="pixels", image_size=16, render_backend="reference",
              physics="mujoco", episode_length=EPISODE, action_repeat=REPEAT, frame_stack=FRAMES)  # fmt: skip
# The CPU pixel recipe (--preset cpu_pixels), shrunk to a test: smaller nets, batch and shift, 3-step returns.
AGENT = dataclasses.replace(
    cpu_pixel_preset().agent, hidden_dims=(64, 64), critic_subsample_size=None, batch_size=64, discount=0.95, n_step=3,
    image_augmentation_pad=1, encoder=EncoderConfig(channels=(16, 16), latent_dim=32),
)  # fmt: skip


def evaluate(vec, policy, params) -> float:
    """Mean return of the deterministic policy over one episode of every env, from fixed start states."""
    stacker = FrameStacker(FRAMES)
    obs = stacker.reset(vec.reset(seed=123)[0])
    total = np.zeros(NUM_ENVS)
    for _ in range(STEPS_PER_EPISODE):
        action = np.asarray(policy(params, obs, jax.random.PRNGKey(0), deterministic=True))
        frames, reward, terminated, truncated, _ = vec.step(action)
        obs = stacker.step(frames, terminated | truncated)
        total += reward
    return float(total.mean())


@pytest.mark.slow
def test_drq_learns_pixel_cartpole_through_the_nodes(tmp_path):
    set_render_threads(1)  # as the actor does: torch's OpenMP threads spin-wait on a busy machine
    rate = RateLimiterConfig(utd=UTD, min_inserts=RANDOM_STEPS, tolerance=20.0)
    returns, counters, learner = learn_through_threads(
        tmp_path / "run", ENV, AGENT, rate, num_envs=NUM_ENVS, random_steps=RANDOM_STEPS, max_updates=BUDGET,
        score=evaluate, threshold=THRESHOLD, every=EVAL_EVERY,
    )  # fmt: skip

    print(f"deterministic returns every {EVAL_EVERY} updates: {returns}; learner: {counters['updates']} updates")
    assert learner.replay.unpaired == 0  # every non-first record found its predecessor
    assert returns[-1] >= THRESHOLD, f"no return >= {THRESHOLD} within {BUDGET} updates: {returns}"
    assert returns[-1] > returns[0] + 80, f"no clear improvement over the untrained policy: {returns}"
