"""Retrieval-augmented generation over the lakehouse's gold document tables.

Transport-neutral: chunking and the incremental index plan are pure functions; the HTTP edge
lives with the serving platform.
"""
