"""Loss values on tiny hand-set networks, against numbers worked out by hand."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from serl_gs.agents import losses
from serl_gs.agents.config import AgentConfig
from serl_gs.agents.networks import make_networks
from serl_gs.data.batch import Batch

# Linear critics and actor (no hidden layers): Q_i(s, a) = w_s s + w_a a + b,
# mean = w s + b, log_std = w s + b.
LINEAR = dict(hidden_dims=(), critic_layer_norm=False, actor_layer_norm=False, critic_ensemble_size=2)


def linear_networks(**overrides):
    config = AgentConfig(**{**LINEAR, **overrides})
    return make_networks(config, {"state": jax.ShapeDtypeStruct((1,), jnp.float32)}, action_dim=1)


def critic_params(ws, wa, b):
    """Ensemble params for Q_i = ws[i] * s + wa[i] * a + b[i]."""
    kernel = jnp.array([[[w_s], [w_a]] for w_s, w_a in zip(ws, wa, strict=True)], jnp.float32)  # [E, 2, 1]
    return {"q": {"kernel": kernel, "bias": jnp.array(b, jnp.float32)[:, None]}}


def actor_params(mean, std):
    zero = jnp.zeros((1, 1), jnp.float32)
    return {
        "mean": {"kernel": zero, "bias": jnp.array([mean], jnp.float32)},
        "log_std": {"kernel": zero, "bias": jnp.array([math.log(std)], jnp.float32)},
    }


def test_hand_set_params_have_the_structure_init_makes():
    networks = linear_networks()
    params = networks.init(jax.random.PRNGKey(0))
    same = lambda a, b: (
        jax.tree.structure(a) == jax.tree.structure(b)
        and all(x.shape == y.shape for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    )
    assert same(params["critic"], critic_params([1, 2], [1, 2], [0, 0]))
    assert same(params["actor"], actor_params(0.0, 1.0))


def test_critic_loss_takes_the_min_target_and_stops_at_terminations():
    networks = linear_networks(discount=0.5, critic_subsample_size=None)
    batch = Batch(
        obs={"state": jnp.array([[1.0], [2.0]])},
        action=jnp.array([[0.5], [-0.5]]),
        reward=jnp.array([1.0, 0.0]),
        terminated=jnp.array([False, True]),
        next_obs={"state": jnp.array([[3.0], [4.0]])},
    )
    online = critic_params(ws=[1, -1], wa=[2, 0], b=[0, 1])  # Q1 = s + 2a, Q2 = -s + 1
    # Target critics ignore the action, so the sampled next action cannot change the target:
    # Qt1(s') = s', Qt2(s') = 2 s' - 2 -> min at s'=3: min(3, 4) = 3; at s'=4: min(4, 6) = 4.
    target = critic_params(ws=[1, 2], wa=[0, 0], b=[0, -2])
    # y = r + 0.5 (1 - terminated) min Qt = [1 + 0.5 * 3, 0] = [2.5, 0]
    # Q1 = [1 + 1, 2 - 1] = [2, 1]; Q2 = [0, -1]
    # loss = mean([(2 - 2.5)^2, (1 - 0)^2, (0 - 2.5)^2, (-1 - 0)^2]) = (0.25 + 1 + 6.25 + 1) / 4 = 2.125
    loss, info = losses.critic_loss(
        networks,
        {"encoder": {}, "critic": online},
        {"encoder": {}, "critic": target},
        actor_params(0.0, 1.0),
        jnp.float32(0.0),
        batch,
        jax.random.PRNGKey(0),
    )
    assert float(loss) == pytest.approx(2.125, abs=1e-6)
    assert float(info["target_q"]) == pytest.approx(1.25, abs=1e-6)
    assert float(info["q"]) == pytest.approx(0.5, abs=1e-6)


def test_redq_min_takes_the_min_over_a_random_subset_of_members():
    qs = jnp.array([[3.0], [1.0], [2.0]])  # three members, one sample
    assert float(losses.redq_min(qs, jax.random.PRNGKey(0), None)[0]) == 1.0
    assert float(losses.redq_min(qs, jax.random.PRNGKey(0), 3)[0]) == 1.0
    keys = jax.random.split(jax.random.PRNGKey(1), 3000)
    mins = np.asarray(jax.vmap(lambda k: losses.redq_min(qs, k, 2)[0])(keys))
    # Subsets of 2 out of 3: {0,1} -> 1, {1,2} -> 1, {0,2} -> 2. So 2 comes out a third of the time, 3 never.
    assert set(np.unique(mins)) == {1.0, 2.0}
    assert np.mean(mins == 2.0) == pytest.approx(1 / 3, abs=0.03)


def test_actor_loss_matches_a_numpy_reference_with_the_same_noise():
    networks = linear_networks()
    critic = critic_params(ws=[1, -1], wa=[2, 0], b=[0, 1])  # mean over members = (2a + 1) / 2 = a + 0.5
    obs = {"state": jnp.array([[1.0], [2.0], [-1.0]])}
    key = jax.random.PRNGKey(42)
    temperature_param = jnp.float32(math.log(math.expm1(0.5)))  # softplus -> alpha = 0.5
    loss, info = losses.actor_loss(networks, actor_params(0.2, 0.5), {}, critic, temperature_param, obs, key)

    eps = np.asarray(jax.random.normal(key, (3, 1)))[:, 0]  # the loss uses its key as-is for the noise
    u = 0.2 + 0.5 * eps
    a = np.tanh(u)
    log_prob = -0.5 * eps**2 - math.log(0.5) - 0.5 * math.log(2 * math.pi) - np.log(1 - np.tanh(u) ** 2)
    expected = np.mean(0.5 * log_prob - (a + 0.5))
    assert float(loss) == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(np.asarray(info["log_probs"]), log_prob, atol=1e-5)


def test_temperature_loss_and_its_gradient_by_hand():
    # alpha = 0.5, log pi = [-1, -3] -> entropy 2; target -|A|/2 = -0.5; loss = 0.5 * (2 + 0.5) = 1.25.
    param = jnp.float32(math.log(math.expm1(0.5)))
    log_probs = jnp.array([-1.0, -3.0])
    target = AgentConfig().resolved_target_entropy(1)
    assert target == -0.5
    loss, info = losses.temperature_loss(param, log_probs, target)
    assert float(loss) == pytest.approx(1.25, abs=1e-6)
    assert float(info["temperature"]) == pytest.approx(0.5, abs=1e-6)
    # d loss / d param = sigmoid(param) * 2.5 = (1 - exp(-0.5)) * 2.5 > 0: entropy above target lowers alpha.
    grad = jax.grad(lambda p: losses.temperature_loss(p, log_probs, target)[0])(param)
    assert float(grad) == pytest.approx((1 - math.exp(-0.5)) * 2.5, abs=1e-5)


def test_temperature_loss_fits_the_entropy_of_the_online_rows_only():
    # Rows marked demo are left out: log pi = [-1, -3] online plus a near-deterministic demo row (+50) gives the
    # loss and gradient of [-1, -3] alone (entropy 2), whatever the demo row holds.
    param = jnp.float32(math.log(math.expm1(0.5)))
    target = -0.5
    demo = jnp.array([True, False, False])
    grad = jax.grad(lambda p, lp, d: losses.temperature_loss(p, lp, target, d)[0])
    online_only = grad(param, jnp.array([-1.0, -3.0]), None)
    for demo_log_prob in (50.0, -7.0):
        log_probs = jnp.array([demo_log_prob, -1.0, -3.0])
        loss, info = losses.temperature_loss(param, log_probs, target, demo)
        assert float(loss) == pytest.approx(1.25, abs=1e-6)
        assert float(info["temperature_entropy"]) == pytest.approx(2.0, abs=1e-6)
        assert float(grad(param, log_probs, demo)) == pytest.approx(float(online_only), abs=1e-7)
    # Without the mask the demo row counts: entropy (-50 + 1 + 3) / 3 < target, so alpha is pushed up.
    assert float(grad(param, jnp.array([50.0, -1.0, -3.0]), None)) < 0


def test_backup_entropy_subtracts_the_discounted_entropy_bonus():
    batch = Batch(
        obs={"state": jnp.array([[1.0]])},
        action=jnp.array([[0.0]]),
        reward=jnp.array([0.0]),
        terminated=jnp.array([False]),
        next_obs={"state": jnp.array([[1.0]])},
    )
    critic = critic_params(ws=[0, 0], wa=[0, 0], b=[0, 0])  # Q = 0 everywhere: the target is the bonus alone
    param = jnp.float32(math.log(math.expm1(0.5)))
    key = jax.random.PRNGKey(5)
    args = (
        {"encoder": {}, "critic": critic},
        {"encoder": {}, "critic": critic},
        actor_params(0.0, 1.0),
        param,
        batch,
    )
    plain = losses.critic_loss(linear_networks(discount=0.5), *args, key)[1]["target_q"]
    with_bonus = losses.critic_loss(linear_networks(discount=0.5, backup_entropy=True), *args, key)[1]["target_q"]
    next_key = jax.random.split(key)[0]  # the loss draws the next action with the first half of its key
    eps = float(jax.random.normal(next_key, (1, 1))[0, 0])
    log_prob = -0.5 * eps**2 - 0.5 * math.log(2 * math.pi) - math.log(1 - math.tanh(eps) ** 2)
    assert float(plain) == 0.0
    assert float(with_bonus) == pytest.approx(-0.5 * 0.5 * log_prob, abs=1e-5)
