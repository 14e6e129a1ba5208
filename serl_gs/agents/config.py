"""Typed configuration of the SAC / DrQ agent. Defaults follow SERL's DrQ recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Activation = Literal["relu", "tanh", "silu", "elu"]


@dataclass(frozen=True)
class EncoderConfig:
    """Image encoder (used only when observations hold "pixels/<camera>" entries).

    Default: a conv net trained from scratch by the critic (SERL's default, a frozen ImageNet ResNet-10,
    needs downloaded weights). The actor sees the encoder's output through a stop-gradient.
    """

    channels: tuple[int, ...] = (32, 32, 32, 32)  # 3x3 convs, the first with stride 2 (DrQ-v2's encoder)
    first_stride: int = 2  # stride of the first conv
    latent_dim: int = 50  # image features -> Dense -> LayerNorm -> tanh, as SERL's bottleneck
    share_across_cameras: bool = True  # one conv net for every camera, or one per camera
    pretrained_path: str | None = None  # flax-serialized (msgpack) encoder params, see agents.pretrained
    trainable: bool = (
        True  # False freezes the encoder (e.g. pretrained weights): gradients stop at its output
    )

    def __post_init__(self):
        if not self.channels or any(c < 1 for c in self.channels):
            raise ValueError(f"channels must be positive and non-empty, got {self.channels}")
        if self.first_stride < 1:
            raise ValueError(f"first_stride must be >= 1, got {self.first_stride}")
        if self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {self.latent_dim}")


@dataclass(frozen=True)
class AgentConfig:
    """SAC on state observations; the same agent is DrQ when observations hold pixels.

    One update = `critic_actor_ratio` critic steps on fresh minibatches; the last of them also updates the
    actor and the temperature (SERL's high-UTD update). Polyak averaging follows every critic step.
    """

    # Networks.
    hidden_dims: tuple[int, ...] = (256, 256)  # MLP hidden sizes of actor and critics
    activation: Activation = "tanh"  # of the MLPs
    critic_layer_norm: bool = True
    actor_layer_norm: bool = False
    critic_ensemble_size: int = 10  # critics in the ensemble (REDQ)
    critic_subsample_size: int | None = 2  # REDQ: target = min over a random subset; None = min over all
    std_min: float = 1e-5
    std_max: float = 5.0
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    image_augmentation_pad: int = 4  # random shift (edge padding) on obs and next_obs independently; 0 = off

    # Learning.
    discount: float = 0.96  # SERL's pick task; long-horizon tasks (e.g. cartpole) want ~0.99
    n_step: int = 1  # n-step returns: the critic's target sums n discounted rewards (data.sampling)
    tau: float = 0.005  # Polyak averaging rate of the target critics
    backup_entropy: bool = False  # subtract the entropy term in the critic's target
    initial_temperature: float = 0.01  # initial SAC temperature (entropy weight)
    target_entropy: float | None = None  # None = -|A| / 2
    actor_lr: float = 3e-4  # Adam learning rate of the actor
    critic_lr: float = 3e-4  # Adam learning rate of the critics (and the encoder)
    temperature_lr: float = 3e-4  # Adam learning rate of the temperature
    batch_size: int = 256  # minibatch size of each critic step
    critic_actor_ratio: int = 4  # critic steps per actor step within one update
    # The critic steps run in lax.scan. XLA:CPU runs convolutions inside loop bodies many times slower
    # (jax-ml/jax#12868; measured 15x here), so "auto" unrolls the scan for pixel agents on the CPU backend.
    scan_unroll: Literal["auto", "always", "never"] = "auto"
    # What the actor step encodes its observations with. "critic_step": the features the last critic step
    # computed (before its gradient step; DrQ-v2 does the same), saving one encoder pass per update (measured in
    # bench_learner's drq_cpu cases). "recompute": encode again with the updated encoder (SERL).
    actor_features: Literal["critic_step", "recompute"] = "critic_step"
    # Mixed precision: the dtype convolutions and dense layers compute in; parameters, optimizer state,
    # LayerNorm statistics, Q values, action distributions and losses stay float32. "auto": bfloat16 on a GPU
    # (tensor cores, half the activation traffic), float32 on a CPU (XLA:CPU has no fast bf16 convolutions:
    # bench_learner's lever cases measure both). Logged once (agents.networks.resolve_compute_dtype).
    compute_dtype: Literal["auto", "float32", "bfloat16"] = "float32"

    def __post_init__(self):
        if self.critic_ensemble_size < 1:
            raise ValueError(f"critic_ensemble_size must be >= 1, got {self.critic_ensemble_size}")
        if self.critic_subsample_size is not None and not (
            1 <= self.critic_subsample_size <= self.critic_ensemble_size
        ):
            raise ValueError(
                f"critic_subsample_size {self.critic_subsample_size} must be in "
                f"[1, critic_ensemble_size={self.critic_ensemble_size}] or None"
            )
        if not 0.0 <= self.discount <= 1.0:
            raise ValueError(f"discount must be in [0, 1], got {self.discount}")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.initial_temperature <= 0.0:
            raise ValueError(f"initial_temperature must be > 0, got {self.initial_temperature}")
        if not 0.0 < self.std_min < self.std_max:
            raise ValueError(f"need 0 < std_min < std_max, got {self.std_min}, {self.std_max}")
        if self.n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {self.n_step}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.critic_actor_ratio < 1:
            raise ValueError(f"critic_actor_ratio must be >= 1, got {self.critic_actor_ratio}")
        if self.image_augmentation_pad < 0:
            raise ValueError(f"image_augmentation_pad must be >= 0, got {self.image_augmentation_pad}")
        if self.scan_unroll not in ("auto", "always", "never"):
            raise ValueError(f"scan_unroll must be auto, always or never, got {self.scan_unroll!r}")
        if self.actor_features not in ("critic_step", "recompute"):
            raise ValueError(f"actor_features must be critic_step or recompute, got {self.actor_features!r}")
        if self.compute_dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"compute_dtype must be auto, float32 or bfloat16, got {self.compute_dtype!r}")
        if self.activation not in ("relu", "tanh", "silu", "elu"):
            raise ValueError(f"activation must be relu, tanh, silu or elu, got {self.activation!r}")

    def resolved_target_entropy(self, action_dim: int) -> float:
        return -action_dim / 2 if self.target_entropy is None else self.target_entropy


@dataclass(frozen=True)
class PixelPreset:
    """What a pixel agent needs beyond the task: image size, frames stacked per camera, and the agent."""

    image_size: int
    frames: int
    agent: AgentConfig


def cpu_pixel_preset() -> PixelPreset:
    """Pixel DrQ sized for a few CPU cores (docs/pixels-cpu.md; the presets cpu_pixels and pick_pixels use it).

    Chosen from measurements on a shared 2-core machine (bench_learner's drq_cpu cases, with
    keep_freed_memory): at 64² and 4x32-channel convs an update took 3-9 s; 32² with two 32-channel convs and
    128x128 MLPs runs 7-8 updates/s beside its actor, which renders 16 frames/s; the render, not the update,
    then bounds the data. 2 critics (the REDQ subset is all of them), batch 128, one critic step per update.
    3-step returns (DrQ-v2's): with 1-step ones pixel cartpole's eval swung between checkpoints (944, 716, 561,
    927 at 7k-10k updates); with 3 it held 892-938 from 4k to 10k (docs/pixels-cpu.md).
    """
    return PixelPreset(
        image_size=32,
        frames=3,
        agent=AgentConfig(
            hidden_dims=(128, 128),
            critic_ensemble_size=2,
            batch_size=128,
            critic_actor_ratio=1,
            discount=0.99,
            n_step=3,
            actor_lr=1e-3,
            critic_lr=1e-3,
            temperature_lr=1e-3,
            initial_temperature=0.1,
            image_augmentation_pad=2,
            encoder=EncoderConfig(channels=(32, 32), latent_dim=50),
        ),
    )
