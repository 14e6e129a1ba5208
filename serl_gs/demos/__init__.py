"""Demonstrations: recording (serl_gs.demos.recorder), a pickle-free HDF5 file in robomimic's layout
(serl_gs.demos.dataset), the sources that act in them or take over from the policy (serl_gs.demos.sources), and the
demo buffer RLPD samples from, intervened records included (serl_gs.demos.mixing). `python -m serl_gs.demos`."""
