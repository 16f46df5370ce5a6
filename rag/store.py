"""The Chroma collection holding the index: open it, read its state, write and delete chunks."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
import structlog

from kernel.errors import Busy, ConfigError, NotReady, Upstream
from rag.plan import IndexedDoc
from rag.settings import RagSettings

log = structlog.get_logger(__name__)

# Chunk metadata keys the index itself relies on; everything else comes from the table.
DOC_ID = "doc_id"
FINGERPRINT = "fingerprint"
CHUNK_INDEX = "chunk"
# Collection metadata: the embedding model that built it, and a token changed by every write.
MODEL_KEY = "lakeserve:embedding_model"
REVISION_KEY = "lakeserve:revision"
CHANGED_KEY = "lakeserve:changed_at"  # epoch seconds of the last revision: what replicas serve
# The relevance floor `rag eval --calibrate` measured for this collection's corpus and embedder.
FLOOR_KEY = "lakeserve:relevance_floor"
LEASE_KEY = "lakeserve:ingest_lease"  # "<owner> <expires, epoch s>": one ingest at a time
LEASE_SETTLE_S = 0.5
PAGE = 5000


@dataclass(frozen=True)
class StoredChunk:
    """A chunk as read back from the index."""

    id: str
    text: str
    metadata: dict[str, Any]


def connect(settings: RagSettings) -> Any:
    """Return a Chroma client: HTTP when LAKESERVE_CHROMA_URL is set, else embedded on disk."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    try:
        if settings.chroma_url:
            # chromadb's HTTP client waits forever (httpx timeout=None), in its constructor too:
            # a bounded heartbeat first, then every later call gets the same bound.
            _heartbeat(settings)
            url = urlparse(settings.chroma_url)
            client = chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 80),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
            session = getattr(getattr(client, "_server", None), "_session", None)
            if isinstance(session, httpx.Client):
                session.timeout = httpx.Timeout(settings.chroma_timeout_s)
            return client
        settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)
    except ValueError as exc:  # chromadb reports an unreachable server as ValueError
        raise Upstream(f"cannot reach Chroma at {settings.chroma_target}: {exc}") from exc


def _alive(owner: str) -> bool:
    """False when `owner` ("host:pid:nonce") is a process of this host that no longer runs.

    A killed ingest on this machine gives the lease back at once; on another host (a Job's
    pod) its lease ends with its TTL.
    """
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _heartbeat(settings: RagSettings) -> None:
    """Raise Upstream unless the Chroma server answers its heartbeat in time."""
    url = f"{str(settings.chroma_url).rstrip('/')}/api/v2/heartbeat"
    try:
        httpx.get(url, timeout=settings.chroma_timeout_s).raise_for_status()
    except httpx.HTTPError as exc:
        raise Upstream(
            f"cannot reach Chroma at {settings.chroma_target} within "
            f"{settings.chroma_timeout_s:g}s: {type(exc).__name__}"
        ) from exc


class Index:
    """One Chroma collection of chunks with their embeddings (cosine space)."""

    def __init__(self, client: Any, collection: Any) -> None:
        self.client = client
        self.collection = collection

    @classmethod
    def open(cls, settings: RagSettings, create: bool = False) -> Index:
        """Open the collection; `create` makes it when missing (ingestion does)."""
        client = connect(settings)
        name = settings.rag_collection
        try:
            if create:
                collection = client.get_or_create_collection(
                    name,
                    embedding_function=None,
                    metadata={"hnsw:space": "cosine", MODEL_KEY: settings.embedding_identity},
                )
            else:
                collection = client.get_collection(name, embedding_function=None)
        except Exception as exc:
            if not create and "does not exist" in str(exc):
                raise ConfigError(
                    f"collection {name!r} does not exist in Chroma at {settings.chroma_target}: "
                    "run `lakeserve rag ingest` first"
                ) from exc
            raise Upstream(f"Chroma at {settings.chroma_target}: {exc}") from exc
        index = cls(client, collection)
        built_with = index.metadata.get(MODEL_KEY)
        if built_with and built_with != settings.embedding_identity:
            raise ConfigError(
                f"collection {name!r} was embedded with {built_with}, not "
                f"{settings.embedding_identity}: use another LAKESERVE_RAG_COLLECTION"
            )
        return index

    @property
    def metadata(self) -> dict[str, Any]:
        """Return the collection's metadata."""
        return dict(self.collection.metadata or {})

    def revision(self) -> str:
        """Return the token the last write left (changes whenever the chunks change)."""
        self._reload()
        try:
            count = self.collection.count()
        except Exception as exc:
            raise Upstream(f"Chroma: {type(exc).__name__}: {exc}"[:300]) from exc
        return str(self.metadata.get(REVISION_KEY, "")) + f":{count}"

    def _reload(self) -> None:
        """Read the collection (and its metadata) afresh: another process may have changed it."""
        try:
            self.collection = self.client.get_collection(
                self.collection.name, embedding_function=None
            )
        except Exception as exc:
            raise Upstream(f"Chroma: {type(exc).__name__}: {exc}"[:300]) from exc

    def bump_revision(self) -> None:
        """Record that the chunks changed, so servers reload their keyword index."""
        self._set(REVISION_KEY, uuid.uuid4().hex, {CHANGED_KEY: round(time.time(), 3)})

    def changed_at(self) -> float | None:
        """Return when the chunks last changed (epoch seconds), as of the last read."""
        value = self.metadata.get(CHANGED_KEY)
        return float(value) if value is not None else None

    def take_lease(self, owner: str, ttl_s: float) -> None:
        """Take the collection's ingest lease, or raise Busy while another run holds it.

        Chroma has no compare-and-set: the lease is written, then read back after a pause, so
        of two runs starting together the last writer keeps it and the other exits. A killed
        run's lease expires after `ttl_s`; a live run renews it (`renew_lease`).
        """
        holder = self._lease()
        if (
            holder is not None
            and holder[0] != owner
            and holder[1] > time.time()
            and _alive(holder[0])
        ):
            raise Busy(
                f"another ingest ({holder[0]}) is writing collection {self.collection.name!r}; "
                f"its lease ends in {holder[1] - time.time():.0f}s unless renewed"
            )
        self.renew_lease(owner, ttl_s)
        time.sleep(LEASE_SETTLE_S)
        holder = self._lease()
        if holder is None or holder[0] != owner:
            raise Busy(f"another ingest took collection {self.collection.name!r} at the same time")

    def renew_lease(self, owner: str, ttl_s: float) -> None:
        """Extend this run's lease."""
        self._set(LEASE_KEY, f"{owner} {time.time() + ttl_s:.0f}")

    def release_lease(self, owner: str) -> None:
        """Give the lease back (if this run still holds it)."""
        holder = self._lease()
        if holder is not None and holder[0] == owner:
            self._set(LEASE_KEY, f"{owner} 0")

    def _lease(self) -> tuple[str, float] | None:
        """Return the current lease (owner, expiry), read afresh; None when there is none."""
        self._reload()
        value = self.metadata.get(LEASE_KEY)
        if not isinstance(value, str) or " " not in value:
            return None
        owner, _, expires = value.rpartition(" ")
        return owner, float(expires)

    def relevance_floor(self) -> float | None:
        """Return the calibrated relevance floor stored with the collection, if any."""
        value = self.metadata.get(FLOOR_KEY)
        return float(value) if value is not None else None

    def set_relevance_floor(self, floor: float) -> None:
        """Store a calibrated relevance floor; servers pick it up with their next refresh."""
        self._set(FLOOR_KEY, round(float(floor), 4))
        self.bump_revision()

    def _set(
        self, key: str, value: str | float, more: dict[str, str | float] | None = None
    ) -> None:
        # modify() replaces the whole metadata; the distance space cannot be changed.
        meta = {k: v for k, v in self.metadata.items() if k != "hnsw:space"}
        meta[key] = value
        meta.update(more or {})
        self.collection.modify(metadata=meta)

    def count(self) -> int:
        """Return the number of chunks."""
        return int(self.collection.count())

    def state(self) -> dict[str, IndexedDoc]:
        """Return, per document, its chunk ids and the fingerprints they were written with."""
        docs: dict[str, IndexedDoc] = {}
        for ids, metas in self._pages(include=["metadatas"]):
            for chunk_id, meta in zip(ids, metas, strict=True):
                entry = docs.setdefault(str(meta[DOC_ID]), IndexedDoc())
                entry.chunk_ids.add(chunk_id)
                entry.hashes.add(str(meta.get(FINGERPRINT, "")))
        return docs

    def chunks(self) -> Iterator[StoredChunk]:
        """Yield every chunk with its text and metadata (for the keyword index)."""
        for ids, metas, texts in self._pages(include=["metadatas", "documents"]):
            for chunk_id, meta, text in zip(ids, metas, texts, strict=True):
                yield StoredChunk(chunk_id, text or "", dict(meta))

    def _pages(self, include: list[str]) -> Iterator[tuple[Any, ...]]:
        offset = 0
        while True:
            page = self.collection.get(include=include, limit=PAGE, offset=offset)
            ids = page["ids"]
            if not ids:
                return
            yield (ids, *(page[key] for key in include))
            offset += len(ids)

    def upsert(
        self,
        ids: Sequence[str],
        embeddings: Any,
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
    ) -> None:
        """Write chunks (insert or replace by id)."""
        self.collection.upsert(
            ids=list(ids), embeddings=embeddings, documents=list(texts), metadatas=list(metadatas)
        )

    def delete(self, ids: Sequence[str]) -> None:
        """Delete chunks by id."""
        for start in range(0, len(ids), PAGE):
            self.collection.delete(ids=list(ids[start : start + PAGE]))

    def query(
        self,
        embedding: Sequence[float],
        n: int,
        where: dict[str, Any] | None,
        known: Mapping[str, StoredChunk] | None = None,
    ) -> list[tuple[StoredChunk, float]]:
        """Return the `n` nearest chunks with their cosine similarity, best first.

        With `known` (chunks already in memory by id, e.g. the keyword index's), Chroma is asked
        for ids and distances only and the text and metadata come from `known`; only chunks not
        in it (written since it was loaded) are read from Chroma. Reading 30 documents with
        their metadata was most of a hybrid query's extra cost at 100k chunks (bench/rag_query).

        Raises:
            NotReady: Chroma is down, hung past its timeout, or failed the query.
        """
        include = ["distances"] if known is not None else ["metadatas", "documents", "distances"]
        try:
            result = self.collection.query(
                query_embeddings=[list(embedding)], n_results=n, where=where or None,
                include=include,
            )  # fmt: skip
            ids, distances = result["ids"][0], result["distances"][0]
            if known is None:
                found = _stored(ids, result["documents"][0], result["metadatas"][0])
            else:
                found = {i: known[i] for i in ids if i in known}
                missing = [i for i in ids if i not in found]
                if missing:
                    found.update(self._read(missing))
        except Exception as exc:
            raise NotReady(
                f"the vector store is unavailable: {type(exc).__name__}: {exc}"[:300]
            ) from exc
        return [
            (found[chunk_id], 1.0 - float(distance))
            for chunk_id, distance in zip(ids, distances, strict=True)
            if chunk_id in found  # deleted between the query and the read
        ]

    def _read(self, ids: Sequence[str]) -> dict[str, StoredChunk]:
        """Read chunks by id with their text and metadata."""
        got = self.collection.get(ids=list(ids), include=["metadatas", "documents"])
        return _stored(got["ids"], got["documents"], got["metadatas"])


def _stored(
    ids: Sequence[str], texts: Sequence[Any], metas: Sequence[Any]
) -> dict[str, StoredChunk]:
    """Chunks by id from Chroma's parallel lists of ids, documents and metadatas."""
    return {
        chunk_id: StoredChunk(chunk_id, text or "", dict(meta))
        for chunk_id, text, meta in zip(ids, texts, metas, strict=True)
    }
