"""Records, the frame-once replay, batches and image augmentation for the learner."""
