"""Zero-copy across the JAX <-> torch bridge, asserted by buffer addresses (the stage's inputs and outputs
share memory with the JAX arrays), and where the bridge renders. The CUDA copy count is in
test_render_gsplat.py (GPU) and benchmarks/gpu_render_checks.py."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

from benchmarks.gpu_render_checks import host_device_copies, shared_pointers
from serl_gs.render import bridge
from serl_gs.render.config import RenderConfig, SceneConfig
from serl_gs.render.stage import RenderStage

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402

MJCF = """
<mujoco>
  <worldbody>
    <camera name="top" pos="0 0 2" fovy="60"/>
    <body name="ball" pos="0 0 0.5"><freejoint/><geom type="sphere" size="0.2" rgba="0.9 0.3 0.1 1"/></body>
  </worldbody>
</mujoco>
"""


def jax_poses(model, num_envs: int):
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    fields = (data.xpos, data.xquat, data.cam_xpos, data.cam_xmat)
    return [jnp.asarray(np.repeat(f[None], num_envs, 0), jnp.float32) for f in fields]


def test_bridge_shares_memory_both_ways():
    x = jnp.arange(12.0, dtype=jnp.float32).reshape(3, 4)
    t = bridge.to_torch(x, torch.device("cpu"))
    assert t.data_ptr() == x.unsafe_buffer_pointer()
    back = bridge.to_jax(t * 2)
    assert isinstance(back, jax.Array)
    out = torch.arange(6, dtype=torch.uint8)
    assert bridge.to_jax(out).unsafe_buffer_pointer() == out.data_ptr()
    np.testing.assert_array_equal(np.asarray(back), 2 * np.asarray(x))


def test_render_stage_shares_its_input_and_output_buffers_with_jax():
    model = mujoco.MjModel.from_xml_string(MJCF)
    config = RenderConfig(backend="reference", image_size=16, device="cpu")
    stage = RenderStage(model, config, scene_config=SceneConfig(cache_dir=None, density=300.0))
    inputs = jax_poses(model, 3)
    with shared_pointers() as seen, jax.transfer_guard("disallow"):
        images = stage.render(*inputs)
    assert [a.unsafe_buffer_pointer() for a in inputs] == seen["to_torch"]  # torch read JAX's buffers
    assert seen["to_jax"] == [images.unsafe_buffer_pointer()]  # and JAX holds torch's images
    assert images.shape == (3, 1, 16, 16, 3) and images.dtype == jnp.uint8 and int(images.max()) > 100
    assert host_device_copies(lambda: stage.render(*inputs)) == []  # trivially on a CPU; counted on a GPU


def test_inputs_render_on_their_own_device():
    cuda0, cuda1, cpu = torch.device("cuda", 0), torch.device("cuda", 1), torch.device("cpu")
    assert bridge.render_device(cuda1, torch.device("cuda")) == cuda1  # a JAX array on GPU 1 stays there
    assert bridge.render_device(cuda1, cuda0) == cuda1
    assert bridge.render_device(cpu, torch.device("cuda")) == torch.device("cuda")  # host arrays move over
    assert bridge.render_device(cpu, cpu) == cpu


def test_jax_stream_query_is_false_without_a_jax_gpu():
    if any(d.platform == "gpu" for d in jax.devices()):
        pytest.skip("JAX has a GPU here")
    assert bridge.jax_orders_external_arrays(0) is False
