"""The HTTP front door: the app factory, one router per domain, its dependencies and errors.

app.py         create_app(host, api_keys, rag, feedback)
deps.py        Annotated dependencies: host, RAG API, feedback store, auth, limited body
errors.py      the one table from errors to status and types; the one error body
inference.py   the pipeline /v2 infer and /predict share
observe.py     metrics of the RAG calls
openapi.py     bodies the routes read themselves, documented with resolvable $refs
routes/        health, metrics, models, v2, predict, rag, openai
"""
