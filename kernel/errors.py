"""The closed set of Lakeserve errors; each carries the process exit code a CLI exits with.

LakeserveError            exit 1  anything we did not expect
 +-- ConfigError          exit 2  bad configuration or arguments
 +-- DataError            exit 3  table missing, schema mismatch, empty data
 +-- TrackingUnavailable  exit 4  the MLflow tracking server cannot be reached
 +-- WorkloadStuck        exit 6  a submitted Kubernetes workload cannot start
 +-- Busy                 exit 7  another run holds the lock (e.g. an ingest of the collection)
 +-- DriftDetected        exit 8  `lakeserve monitor` crossed a threshold (drift, domain, error)
 +-- GateFailed           exit 9  a gate did not pass: the candidate was not promoted, or an
 |                                evaluation fell below its floor
 +-- RequestError         a request cannot be served; the HTTP edge (lakeserve/api/errors.py)
      |                   maps each subclass to one status and error type:
      +-- MalformedRequest        400
      +-- Unauthorized            401
      +-- NotFound                404
      +-- PayloadTooLarge         413
      +-- InvalidInput            422
      +-- Upstream        exit 5  502  a service it depends on (Chroma, LLM endpoint) failed
      +-- NotReady                503
      +-- Overloaded              503  every slot for this work is taken (Retry-After)
"""

from __future__ import annotations

from pydantic import ValidationError


class LakeserveError(Exception):
    """Base class for errors reported to the user as one line and an exit code."""

    exit_code = 1


class ConfigError(LakeserveError):
    """The configuration file or the command-line arguments are invalid."""

    exit_code = 2


def invalid_config(exc: ValidationError) -> ConfigError:
    """Turn a settings or config-file validation error into a one-line ConfigError."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )
    return ConfigError(f"invalid configuration: {problems}")


class DataError(LakeserveError):
    """The data a command needs is missing, empty or has the wrong schema."""

    exit_code = 3


class TrackingUnavailable(LakeserveError):
    """The MLflow tracking server cannot be reached."""

    exit_code = 4


class WorkloadStuck(LakeserveError):
    """A workload cannot start (image not pullable, missing Secret key) or never gets there
    (serving does not pick up a promoted version in time)."""

    exit_code = 6


class Busy(LakeserveError):
    """Another run holds the lock this one needs (one ingest per collection at a time)."""

    exit_code = 7


class DriftDetected(LakeserveError):
    """A monitored window crossed a threshold: its inputs, predictions or errors drifted."""

    exit_code = 8


class GateFailed(LakeserveError):
    """A gate did not pass: the candidate did not take the alias, or a score fell below a floor."""

    exit_code = 9


# Request errors raised by model and RAG code; the HTTP edge maps each to one status code.


class RequestError(LakeserveError):
    """A request cannot be served; the message says what was wrong."""


class MalformedRequest(RequestError):
    """The body is not in a format the endpoint accepts."""


class InvalidInput(RequestError):
    """The body is well-formed but does not match what the model expects."""


class PayloadTooLarge(RequestError):
    """The body or the number of rows exceeds the configured limit."""


class Unauthorized(RequestError):
    """The request lacks a valid API key."""


class NotFound(RequestError):
    """The named model (or version) is not hosted here."""


class NotReady(RequestError):
    """The model exists but is not loaded yet, or lost its backing store."""


class Overloaded(RequestError):
    """Every slot for this kind of work is taken; retry shortly (503 with Retry-After)."""


class Upstream(RequestError):
    """A service the request depends on (LLM endpoint, vector store) failed or timed out."""

    exit_code = 5
