"""Our tasks in Brax's trainers (serl_gs/adapters/brax.py): Brax's own training wrappers (Vmap, Episode,
AutoReset; what its PPO and SAC wrap an env in) over the adapter, stepped under `lax.scan` as its training
loop steps them. Brax is a pinned test dependency (requirements.txt)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from brax.envs.wrappers import training as brax_training

import envs  # noqa: F401  (registers the serl_gs/ ids)
from serl_gs.adapters.brax import FIRST_INFO, TASK_INFO, BraxEnv
from serl_gs.tasks import make_task

EPISODE = 4  # env steps per episode (the task's and EpisodeWrapper's)
NUM_ENVS = 2


def _rollout(env_id: str, impl: str, **options):
    """Three episodes under Brax's wrappers, the same actions in each: (rewards [T, B], task steps [T, B],
    done [T, B], truncation [T, B], final state)."""
    env = BraxEnv(make_task(env_id, episode_length=EPISODE, **options), impl, num_envs=NUM_ENVS)
    assert env.episode_length == EPISODE
    wrapped = brax_training.wrap(env, episode_length=env.episode_length, action_repeat=1)
    rng = np.random.default_rng(0)
    one_episode = rng.uniform(-1, 1, (EPISODE, NUM_ENVS, env.action_size)).astype(np.float32)
    actions = jnp.asarray(np.concatenate([one_episode] * 3))

    def step(state, action):
        state = wrapped.step(state, action)
        return state, (state.reward, state.info[TASK_INFO]["step"], state.done, state.info["truncation"])

    @jax.jit
    def run(key):
        state = wrapped.reset(jax.random.split(key, NUM_ENVS))
        # A metric some other wrapper adds: MjxEnv must keep it, or the scan's carry changes structure.
        added = jnp.full(NUM_ENVS, 7.0)  # (EpisodeWrapper sums every metric: it needs an entry of its own too)
        episode_metrics = {**state.info["episode_metrics"], "added_by_a_wrapper": jnp.zeros(NUM_ENVS)}
        state = state.replace(metrics={**state.metrics, "added_by_a_wrapper": added},
                              info={**state.info, "episode_metrics": episode_metrics})  # fmt: skip
        return jax.lax.scan(step, state, actions)

    final, (reward, steps, done, truncation) = run(jax.random.PRNGKey(3))
    return tuple(np.asarray(x) for x in (reward, steps, done, truncation)), final


@pytest.mark.slow
@pytest.mark.parametrize(
    "env_id, impl, options",
    [("serl_gs/CartpoleBalance-v0", "jax", {}), ("serl_gs/PandaPickCube-v0", "warp", {"action_scale": 0.05})],
)
def test_brax_wrappers_under_scan_reset_each_episode_state(env_id, impl, options):
    (reward, steps, done, truncation), final = _rollout(env_id, impl, **options)
    # EpisodeWrapper ends each episode at its time limit and marks it as truncated (SAC bootstraps through it).
    ends = np.zeros((3 * EPISODE, NUM_ENVS), bool)
    ends[EPISODE - 1 :: EPISODE] = True
    np.testing.assert_array_equal(done > 0, ends)
    np.testing.assert_array_equal(truncation > 0, ends)
    # The task's own info restarts with each episode (its step counter) in step with the wrapper's autoreset ...
    np.testing.assert_array_equal(steps, np.tile(np.arange(1, EPISODE + 1), 3)[:, None].repeat(NUM_ENVS, 1))
    # ... so each episode from the same first state with the same actions is the same episode. Without the reset,
    # PandaPickCube's controller would go on from the last episode's target and the rewards would part.
    np.testing.assert_allclose(reward[EPISODE : 2 * EPISODE], reward[:EPISODE], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(reward[2 * EPISODE :], reward[:EPISODE], rtol=1e-5, atol=1e-6)
    assert np.ptp(reward) > 0, "the actions must change the reward"
    # The wrappers' own keys survived every step (one state structure through the scan).
    assert {"steps", "truncation", "episode_metrics", "first_pipeline_state", FIRST_INFO} <= set(final.info)
    np.testing.assert_array_equal(final.metrics["added_by_a_wrapper"], 7.0)
    if "PandaPickCube" in env_id:
        assert "success" in final.info["episode_metrics"]


def test_the_adapter_names_a_missing_observation():
    with pytest.raises(ValueError, match=r"obs_key 'pixels' is not an observation of CartpoleBalance: \['state'\]"):
        BraxEnv(make_task("serl_gs/CartpoleBalance-v0"), obs_key="pixels")
