"""serl_gs: distributed actor-learner RL from 3D-Gaussian-Splatting pixels on batched MuJoCo-MJX envs.

Importing this package is cheap: no JAX devices, no torch, no CUDA builds. Submodules load what they need.
"""

__version__ = "0.1.0"
