"""Training: read a gold table at a pinned Delta version, fit, evaluate, register, gate promotion."""
