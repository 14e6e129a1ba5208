"""Records (what actors send), the frame-once replay (replay, storage, sampling), batches, augmentation, and
crash-safe directory swaps (saving)."""
