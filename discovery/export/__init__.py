"""Export shaping: stored trajectories -> post-training records (pure, no I/O)."""
