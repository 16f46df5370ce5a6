"""Training: read a gold table at a pinned version, fit, evaluate, register, gate promotion.

Stage functions are pure and typed; only the CLI and `tracking.py` talk to MLflow.
"""
