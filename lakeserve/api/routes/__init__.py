"""One router per domain: health, metrics, models, v2, predict (MLflow-style), rag, openai."""
