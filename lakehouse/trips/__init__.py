"""Taxi trips: a deterministic raw feed (bronze), cleaning rules (silver), features (gold)."""
