"""Model serving: registered MLflow models over Open Inference Protocol v2 and MLflow routes.

Model code here is transport-neutral (it raises lakehouse.errors request errors); the FastAPI app
in `serving.app` is the one place that turns them into HTTP responses, and `serving.deployment`
hosts that app on Ray Serve.
"""
