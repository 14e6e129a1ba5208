"""Demonstrations: recording (serl_gs.demos.recorder), a pickle-free HDF5 file in robomimic's layout
(serl_gs.demos.dataset), the sources that act in them (serl_gs.demos.sources), the demo buffer RLPD samples from
(serl_gs.demos.mixing) and interventions (serl_gs.demos.interventions). `python -m serl_gs.demos record ...`."""
