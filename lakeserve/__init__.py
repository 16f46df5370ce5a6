"""Lakeserve, the platform: the `lakeserve` command and the HTTP front door of the Serve platform.

The top layer: it mounts the workloads' sub-commands (`lake`, `train`, `rag`, `serve`, `chat`)
and composes the model and RAG APIs into one FastAPI app behind one Ray Serve ingress.
"""
