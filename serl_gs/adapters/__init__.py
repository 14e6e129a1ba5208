"""Our tasks in other people's trainers: adapters from `serl_gs.mjx_env.MjxEnv` to their env interfaces.
Each adapter imports its framework when it is imported itself (`serl_gs.adapters.brax` needs brax)."""
