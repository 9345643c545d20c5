"""The lakehouse on object storage: table locations and the atomic primitive on S3.

A lakehouse root may be an S3-compatible URI, ``s3://bucket/prefix`` (`Paths.at(root,
lakehouse=...)` or ``HORTUS_LAKEHOUSE``).  Credentials and the endpoint come from the
environment only, under the names every AWS client reads:

- ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` (and ``AWS_SESSION_TOKEN``);
- ``AWS_REGION`` (default ``us-east-1``);
- ``AWS_ENDPOINT_URL`` for an S3-compatible server other than AWS;
- ``AWS_ALLOW_HTTP=true`` to allow plain http (given automatically for an endpoint on
  the loopback interface, 127.0.0.1 or localhost, such as the test server).

`TableLocation` names a Delta table by URI with the storage options deltalake and
polars need, so the table API reads, writes, deletes and time-travels the same way
on disk and in a bucket.  Concurrent commits to one table are safe on S3: delta-rs
(1.x) writes the next log entry ``_delta_log/<version>.json`` with a conditional PUT
(``If-None-Match: *``), so of two writers of the same version one fails, re-reads
and retries (appends) or reports the conflict; no DynamoDB lock table is needed.

`S3Store` is the `AtomicStore` of `hortus.lakehouse.lease` on S3: put-if-absent is a
PUT with ``If-None-Match: *`` and compare-and-swap a PUT with ``If-Match: <etag>``
(obstore, the Python binding of the object_store crate delta-rs uses).  Object
storage offers no lock that can be held across a Delta commit, so there the lease
fence is part of the commit itself (see `hortus.lakehouse.lease`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

from hortus.errors import HortusError

SCHEMES = ("s3",)
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
# environment variable -> deltalake storage option of the same meaning
_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
)


def is_uri(location: object) -> bool:
    """Return whether a lakehouse location is an object-store URI (not a local path)."""
    return isinstance(location, str) and "://" in location


def split(uri: str) -> tuple[str, str]:
    """Return (bucket, key prefix) of an ``s3://bucket/prefix`` URI; refuse other schemes."""
    parsed = urlparse(uri)
    if parsed.scheme not in SCHEMES or not parsed.netloc:
        raise HortusError(
            f"unsupported lakehouse location {uri!r}: expected a local folder or "
            f"s3://bucket/prefix (an S3-compatible object store)"
        )
    return parsed.netloc, parsed.path.strip("/")


def storage_options() -> dict[str, str]:
    """Return the S3 settings of the environment as deltalake storage options.

    Plain http is allowed only when asked (AWS_ALLOW_HTTP) or for a loopback endpoint.
    """
    opts = {k: os.environ[k] for k in _ENV if os.environ.get(k)}
    opts.setdefault("AWS_REGION", os.environ.get("AWS_DEFAULT_REGION") or "us-east-1")
    endpoint = opts.get("AWS_ENDPOINT_URL", "")
    if endpoint.startswith("http://") and "AWS_ALLOW_HTTP" not in opts:
        host = urlparse(endpoint).hostname or ""
        if host in LOOPBACK:
            opts["AWS_ALLOW_HTTP"] = "true"
    return opts


@dataclass(frozen=True)
class TableLocation:
    """Where one Delta table lives: a local folder or an object-store URI (with its options)."""

    uri: str
    storage_options: dict[str, str] | None = field(default=None, compare=False)

    @classmethod
    def of(cls, location: Path | str) -> TableLocation:
        if is_uri(location):
            split(str(location))  # a clear error for an unsupported scheme
            return cls(str(location).rstrip("/"), storage_options())
        return cls(str(location))

    @property
    def remote(self) -> bool:
        return is_uri(self.uri)

    @property
    def local(self) -> Path | None:
        """Return the local folder of the table (None on object storage)."""
        return None if self.remote else Path(self.uri)

    def exists(self) -> bool:
        """Return whether a Delta table has been written here (its log has a commit)."""
        if not self.remote:
            return (Path(self.uri) / "_delta_log").is_dir()
        from deltalake import DeltaTable

        return DeltaTable.is_deltatable(self.uri, storage_options=self.storage_options)

    def delta(self, version: int | None = None):  # -> DeltaTable
        from deltalake import DeltaTable

        return DeltaTable(self.uri, version=version, storage_options=self.storage_options)

    def read_text(self, relpath: str) -> str:
        """Return the text of a file of the table (FileNotFoundError if there is none)."""
        if not self.remote:
            return (Path(self.uri) / relpath).read_text(encoding="utf-8")
        import obstore

        return bytes(obstore.get(_s3(self.uri), relpath).bytes()).decode("utf-8")

    def write_kwargs(self) -> dict:
        """Return the keyword arguments polars' write_delta/scan_delta need for this location."""
        return {"storage_options": self.storage_options} if self.storage_options else {}


# ------------------------------------------------------------------ S3Store
def _s3(uri: str):
    """Return an obstore S3 store rooted at the URI's prefix, configured from the environment."""
    from obstore.store import S3Store as _Store

    bucket, prefix = split(uri)
    opts = storage_options()
    config = {
        "aws_region": opts["AWS_REGION"],
        **({"aws_endpoint": opts["AWS_ENDPOINT_URL"]} if "AWS_ENDPOINT_URL" in opts else {}),
        **({"aws_access_key_id": opts["AWS_ACCESS_KEY_ID"]} if "AWS_ACCESS_KEY_ID" in opts else {}),
        **(
            {"aws_secret_access_key": opts["AWS_SECRET_ACCESS_KEY"]}
            if "AWS_SECRET_ACCESS_KEY" in opts
            else {}
        ),
        **({"aws_session_token": opts["AWS_SESSION_TOKEN"]} if "AWS_SESSION_TOKEN" in opts else {}),
    }
    allow_http = opts.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes")
    return _Store(
        bucket,
        prefix=prefix or None,
        config=config,
        client_options={"allow_http": allow_http},
    )


def _object(uri: str):
    """Return (store rooted at the bucket, key) for an object URI ``s3://bucket/key``."""
    bucket, key = split(uri)
    if not key:
        raise HortusError(f"{uri!r} names a bucket, not an object")
    return _s3(f"s3://{bucket}"), key


def put_object(uri: str, data: bytes, *, if_absent: bool = False) -> bool:
    """Write an object whole (S3 PUTs are all or nothing); return whether it was written.

    With `if_absent` the PUT is conditional (``If-None-Match: *``): an object already
    there is left as it is and False is returned.
    """
    import obstore
    from obstore.exceptions import AlreadyExistsError, PreconditionError

    store, key = _object(uri)
    try:
        obstore.put(store, key, data, mode="create" if if_absent else "overwrite")
    except (AlreadyExistsError, PreconditionError):
        if if_absent:
            return False
        raise
    return True


def get_object(uri: str) -> bytes:
    """Return the bytes of an object (FileNotFoundError when there is none)."""
    import obstore

    store, key = _object(uri)
    return bytes(obstore.get(store, key).bytes())


def delete_object(uri: str) -> None:
    """Delete an object (no error when there is none)."""
    import obstore

    store, key = _object(uri)
    obstore.delete(store, key)


class S3Store:
    """`AtomicStore` on an S3 prefix: conditional PUTs (If-None-Match: *, If-Match: etag).

    Records are whole objects ``<prefix>/<key>.json``; S3 writes an object whole or
    not at all, and a conditional PUT is decided by the server, so of two writers
    racing on one record exactly one succeeds.  The etag is the server's.
    """

    fences_in_commit = True  # no lock across a Delta commit: the fence is in the commit

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self._store = _s3(self.uri)

    def _key(self, key: str) -> str:
        return f"{key}.json"

    def get(self, key: str) -> tuple[bytes, str] | None:
        import obstore

        try:
            got = obstore.get(self._store, self._key(key))
        except FileNotFoundError:
            return None
        return bytes(got.bytes()), str(got.meta["e_tag"])

    def put_if_absent(self, key: str, data: bytes) -> str | None:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            out = obstore.put(self._store, self._key(key), data, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return None
        return str(out["e_tag"])

    def compare_and_swap(self, key: str, etag: str, data: bytes) -> str | None:
        import obstore
        from obstore.exceptions import PreconditionError

        try:
            out = obstore.put(self._store, self._key(key), data, mode={"e_tag": etag})
        except (PreconditionError, FileNotFoundError):
            return None
        return str(out["e_tag"])

    @contextmanager
    def exclusive(self, key: str) -> Iterator[None]:
        """Refuse: object storage has no lock to hold across a commit (fence in the commit)."""
        raise HortusError(
            f"no exclusive lock {key!r} on object storage ({self.uri}): writes there are "
            "fenced inside the Delta commit (hortus.lakehouse.lease)"
        )
        yield  # pragma: no cover

    def tables(self, prefix: str) -> list[str]:
        """Return the URIs of the Delta tables directly under `prefix` (relative to the store)."""
        import obstore

        prefix = prefix.strip("/")
        listing = obstore.list_with_delimiter(self._store, prefix + "/" if prefix else None)
        out = []
        for folder in listing["common_prefixes"]:
            name = str(folder).strip("/")
            log = obstore.list(self._store, f"{name}/_delta_log/", chunk_size=1)
            if any(len(chunk) for chunk in log):
                out.append(f"{self.uri}/{name}")
        return sorted(out)


# ------------------------------------------------------------ table files
class TableFiles:
    """The files of one Delta table, by path relative to the table: a folder or an S3 prefix.

    What governance needs below the table API (erasure deletes data files of old
    versions and scrubs statistics from the Delta log, which no Delta operation does):
    list, read, overwrite and delete files, the same on disk and in a bucket.  On S3 an
    overwrite is one PUT (an object is replaced whole or not at all, like the rename
    on disk).
    """

    def __init__(self, location: TableLocation):
        self.location = location
        self._store = _s3(location.uri) if location.remote else None
        # Delta log entries read from a bucket, kept while this object lives: a commit file
        # is written once (only `write` below changes one, and updates this), so an erasure
        # that replays the log several times reads each commit once (one GET each)
        self._log: dict[str, bytes] = {}

    @property
    def uri(self) -> str:
        return self.location.uri

    def relative(self, uri: str) -> str:
        """Return the path of a file URI (``file://``, ``s3://`` or absolute) within the table."""
        from urllib.parse import unquote

        base = self.uri.rstrip("/") + "/"
        text = unquote(uri.removeprefix("file://"))
        if text.startswith(base):
            return text[len(base) :]
        if not self.location.remote and Path(text).is_absolute():
            return str(Path(text).relative_to(Path(self.uri)))
        return text

    def list(self, prefix: str = "") -> list[str]:
        """Return the relative paths of every file under `prefix` (sorted)."""
        if self._store is None:
            root = Path(self.uri)
            folder = root / prefix if prefix else root
            if not folder.is_dir():
                return []
            return sorted(str(p.relative_to(root)) for p in folder.rglob("*") if p.is_file())
        import obstore

        out = []
        for chunk in obstore.list(self._store, prefix.rstrip("/") + "/" if prefix else None):
            out.extend(str(meta["path"]) for meta in chunk)
        return sorted(out)

    def data_files(self) -> list[str]:
        """Return the Parquet data files of every version (the Delta log left out)."""
        return [
            f for f in self.list() if f.endswith(".parquet") and not f.startswith("_delta_log/")
        ]

    def log_files(self) -> list[str]:
        """Return the files of the Delta log (commits, checkpoints, ``_last_checkpoint``)."""
        return self.list("_delta_log")

    def exists(self, rel: str) -> bool:
        if self._store is None:
            return (Path(self.uri) / rel).is_file()
        import obstore

        try:
            obstore.head(self._store, rel)
        except FileNotFoundError:
            return False
        return True

    def read(self, rel: str) -> bytes:
        """Return a file's bytes (FileNotFoundError when there is none)."""
        if self._store is None:
            return (Path(self.uri) / rel).read_bytes()
        if rel in self._log:
            return self._log[rel]
        import obstore

        data = bytes(obstore.get(self._store, rel).bytes())
        if rel.startswith("_delta_log/") and rel.endswith(".json"):
            self._log[rel] = data
        return data

    def write(self, rel: str, data: bytes) -> None:
        """Replace a file whole (temp file + rename on disk; one PUT on S3)."""
        if self._store is None:
            path = Path(self.uri) / rel
            tmp = path.with_name(path.name + ".hortus-tmp")
            tmp.write_bytes(data)
            tmp.replace(path)
            return
        import obstore

        obstore.put(self._store, rel, data)
        if rel in self._log:
            self._log[rel] = data

    def delete(self, rel: str) -> None:
        """Delete a file (no error when there is none)."""
        if self._store is None:
            (Path(self.uri) / rel).unlink(missing_ok=True)
            return
        import obstore

        obstore.delete(self._store, rel)  # S3 DELETE of a missing key succeeds


class ObjectFolder:
    """A folder of small objects under an S3 prefix, with conditional PUTs (trust material).

    `put_if_absent` never replaces an object; `swap` replaces one only if it still has
    the etag read (compare-and-swap), so two writers cannot overwrite each other.
    """

    def __init__(self, uri: str):
        self.uri = uri.rstrip("/")
        self._store = _s3(self.uri)

    def __str__(self) -> str:
        return self.uri

    def __truediv__(self, name: str) -> str:
        return f"{self.uri}/{name}"

    def get(self, key: str) -> tuple[bytes, str] | None:
        import obstore

        try:
            got = obstore.get(self._store, key)
        except FileNotFoundError:
            return None
        return bytes(got.bytes()), str(got.meta["e_tag"])

    def put_if_absent(self, key: str, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        try:
            obstore.put(self._store, key, data, mode="create")
        except (AlreadyExistsError, PreconditionError):
            return False
        return True

    def swap(self, key: str, etag: str, data: bytes) -> bool:
        import obstore
        from obstore.exceptions import PreconditionError

        try:
            obstore.put(self._store, key, data, mode={"e_tag": etag})
        except (PreconditionError, FileNotFoundError):
            return False
        return True

    def list(self, prefix: str, *, offset: str | None = None) -> list[str]:
        """Return the keys under `prefix` (relative to this folder, sorted), after `offset`."""
        import obstore

        out = []
        for chunk in obstore.list(self._store, prefix.rstrip("/") + "/", offset=offset):
            out.extend(str(meta["path"]) for meta in chunk)
        return sorted(out)
