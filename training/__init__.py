"""Training: read a gold table at a pinned version, fit, evaluate, register, gate promotion."""
