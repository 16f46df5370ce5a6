"""The platform kernel: errors and exit codes, settings base, logs, the console runner, MLflow, Ray.

The bottom layer of Lakeserve. Every other package may import it; it imports nothing else of
the repository (import-linter checks this in `make lint`).
"""
