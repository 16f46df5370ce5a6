"""Retrieval-augmented generation over the lakehouse's gold document tables.

Transport-neutral: chunking and the incremental index plan are pure functions, the service
implements the typed `rag.api.RagApi` and raises `kernel.errors` request errors; the HTTP routes
are `lakeserve.api.routes.rag` and `.openai`.
"""
