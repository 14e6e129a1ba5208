"""SAC and DrQ (one implementation): config, networks, losses, the pure update, the inference function."""
