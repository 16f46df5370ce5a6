"""The lakehouse: its settings, Delta tables in medallion layers, the trip and document pipelines.

Every workload (training, serving, RAG) reads its data from here and writes what serving sees
back to bronze. It imports only the kernel; the `lake` sub-command is `lakehouse.cli`.
"""
