"""DrQ learns CartpoleBalance from pixels only: the real pixel vector env (CPU MuJoCo + the reference 3DGS
renderer at 16x16), action repeat 8, 3-frame stacks rebuilt by the replay, n-step returns, the DrQ update, and
the policy acting on stacks.

400-control-step episodes (50 env steps of 8); return out of 400. Measured over 32 episodes: uniform random
actions score 141 (std 24; 8 per episode mean, so the mean of 8 envs has std ~9), zero actions 291; the
untrained policy scored 121. The threshold, 250, is 12 standard deviations of an 8-episode mean above random and
130 above the untrained policy: the policy must have learned from the frames. (Balancing for the whole episode,
~400, is the learning run's job: docs/pixels-cpu.md.) Measured: deterministic returns every 100
iterations 121, 199, 126, 199, 157, 172, 257 (crossed at 600), 256, 183, 297, 251, 263, 247, 209, 367; 450 s
for 1,400 iterations beside a learning run on a shared 2-core machine.
"""

from __future__ import annotations

import time

import gymnasium as gym
import jax
import numpy as np
import pytest

from serl_gs.agents.config import AgentConfig, EncoderConfig
from serl_gs.agents.learning import init_training_state, make_update_fn
from serl_gs.agents.networks import make_inference_fn, make_networks, policy_params
from serl_gs.data.frame_stack import FrameStacker, stack_obs_spec
from serl_gs.data.records import RecordSpec, reset_records, step_records
from serl_gs.data.replay import ReplayBuffer, ReplayConfig
from serl_gs.nodes.cli import set_render_threads
from serl_gs.nodes.env_spec import obs_spec_of

NUM_ENVS = 8
UPDATES_PER_ITERATION = 2
N_STEP = 3
EPISODE = 400  # control steps
REPEAT = 8
STEPS_PER_EPISODE = EPISODE // REPEAT
FRAMES = 3
THRESHOLD = 250.0
BUDGET = 1_500  # iterations: one step of every env + UPDATES_PER_ITERATION updates
RANDOM_STEPS = 40
EVAL_EVERY = 100


def make_env():
    return gym.make_vec("serl_gs/CartpoleBalance-v0", num_envs=NUM_ENVS, array_backend="numpy", obs_mode="pixels",
                        image_size=16, render_backend="reference", physics="mujoco", episode_length=EPISODE,
                        action_repeat=REPEAT)  # fmt: skip


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
def test_drq_learns_pixel_cartpole_through_the_pixel_env():
    import envs  # noqa: F401  (registers the serl_gs/ ids)

    set_render_threads(1)  # as the actor does: torch's OpenMP threads spin-wait on a busy machine
    config = AgentConfig(
        hidden_dims=(64, 64),
        critic_ensemble_size=2,
        critic_subsample_size=None,
        critic_actor_ratio=1,
        batch_size=64,
        discount=0.95,
        actor_lr=1e-3,
        critic_lr=1e-3,
        temperature_lr=1e-3,
        initial_temperature=0.1,
        image_augmentation_pad=1,
        encoder=EncoderConfig(channels=(16, 16), latent_dim=32),
    )
    vec, eval_vec = make_env(), make_env()
    frames, _ = vec.reset(seed=0)
    first = reset_records(frames, action_dim=1)
    replay = ReplayBuffer(
        RecordSpec.from_records(first), ReplayConfig(capacity=50_000, frame_stack=FRAMES), log=lambda m: None
    )
    replay.insert("actor-0", first)
    stacker = FrameStacker(FRAMES)
    obs = stacker.reset(frames)

    networks = make_networks(config, stack_obs_spec(obs_spec_of(vec), FRAMES), action_dim=1)
    state = init_training_state(networks, jax.random.PRNGKey(0))
    update, policy = make_update_fn(networks), make_inference_fn(networks)
    returns = [evaluate(eval_vec, policy, policy_params(state.params))]
    rng, key = np.random.default_rng(0), jax.random.PRNGKey(1)
    start = time.monotonic()
    for iteration in range(1, BUDGET + 1):
        key, act_key, sample_key = jax.random.split(key, 3)
        if iteration <= RANDOM_STEPS:
            action = rng.uniform(-1, 1, (NUM_ENVS, 1)).astype(np.float32)
        else:
            action = np.asarray(policy(policy_params(state.params), obs, act_key, deterministic=False))
        frames, reward, terminated, truncated, infos = vec.step(action)
        replay.insert("actor-0", step_records(frames, action, reward, terminated, truncated, infos))
        obs = stacker.step(frames, terminated | truncated)
        if iteration > RANDOM_STEPS:
            for update_key in jax.random.split(sample_key, UPDATES_PER_ITERATION):
                batch = replay.sample(update_key, config.batch_size, config.critic_actor_ratio, N_STEP, config.discount)
                state, metrics = update(state, batch)
        if iteration % EVAL_EVERY == 0:
            returns.append(evaluate(eval_vec, policy, policy_params(state.params)))
            print(f"iteration {iteration} ({time.monotonic() - start:.0f} s): return {returns[-1]:.1f}", flush=True)
            if returns[-1] >= THRESHOLD:
                break

    print(f"deterministic returns every {EVAL_EVERY} iterations: {returns}")
    assert update._cache_size() == 1
    assert replay.unpaired == 0
    assert returns[-1] >= THRESHOLD, f"no return >= {THRESHOLD} within {BUDGET} iterations: {returns}"
    assert returns[-1] > returns[0] + 80, f"no clear improvement over the untrained policy: {returns}"
