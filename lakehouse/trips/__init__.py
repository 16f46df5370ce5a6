"""The taxi-trips dataset: a deterministic raw feed (bronze), cleaning rules (silver), features (gold)."""
