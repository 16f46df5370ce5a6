"""Model serving: registered MLflow models hosted in process, following their aliases.

Transport-neutral: the host, the registry, the signature check and the v2 / MLflow body codecs
raise `kernel.errors` request errors. `lakeserve.api` turns them into HTTP responses and
`lakeserve.deployment` hosts that app on Ray Serve; `lakeserve serve` (serving.cli) runs the
Serve config.
"""
