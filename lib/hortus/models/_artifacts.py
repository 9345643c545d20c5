"""Model files: byte-deterministic skops archives with a signature beside them.

`save_model` normalises the skops archive (see the `hortus.models.modeling`
docstring) so that the same fitted model gives the same bytes and sha256;
`load_model` checks the hash and the types before deserialising; `score_frame`
validates a frame against the signature and adds the output columns.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import polars as pl
import skops.io as sio
from sklearn.pipeline import Pipeline

from hortus.errors import ArtifactError, SignatureError
from hortus.models._estimators import predict, predict_scores
from hortus.models._signature import Signature
from hortus.models._spec import SCORE, ModelSpec
from hortus.models._trust import check_archive

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def signature_path(path: Path) -> Path:
    """Return the signature file that sits beside a model file."""
    return Path(path).with_suffix(".signature.json")


def _normalise_skops(data: bytes) -> bytes:
    """Rewrite a skops archive so that the same model always gives the same bytes."""
    with zipfile.ZipFile(io.BytesIO(data)) as zin:
        names = set(zin.namelist())
        schema = json.loads(zin.read("schema.json"))
        ids: dict[int, int] = {}
        files: dict[str, str] = {}

        def walk(node: Any) -> Any:
            if isinstance(node, list):
                return [walk(v) for v in node]
            if not isinstance(node, dict):
                return node
            out = {}
            for key, value in node.items():
                if key == "__id__" and isinstance(value, int):
                    # skops skips memoisation for a falsy id, so numbering starts at 1
                    out[key] = ids.setdefault(value, len(ids) + 1)
                elif key == "file" and isinstance(value, str) and value in names:
                    out[key] = files.setdefault(value, f"{len(files):06d}{Path(value).suffix}")
                else:
                    out[key] = walk(value)
            return out

        entries = {"schema.json": json.dumps(walk(schema), indent=2).encode()}
        unknown = names - set(files) - {"schema.json"}
        if unknown:
            raise ArtifactError(f"skops archive has entries no node refers to: {sorted(unknown)}")
        entries |= {new: zin.read(old) for old, new in files.items()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zout:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = 3
            info.external_attr = 0o644 << 16
            zout.writestr(info, entries[name])
    return buf.getvalue()


def _trusted_types(data: bytes, where: str, extra: Iterable[str] = ()) -> list[str]:
    """Return the `trusted` list for `skops.io.loads`, or raise naming the refused types.

    Every node of the archive is judged against `hortus.models._trust`'s reviewed
    lists plus `extra` (the project's `trusted_model_types`) before anything is built.
    """
    return check_archive(data, where, extra)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_model(
    pipeline: Pipeline,
    signature: Signature,
    path: Path,
    *,
    metadata: dict | None = None,
    trusted: Iterable[str] = (),
) -> str:
    """Write a fitted pipeline as a byte-deterministic skops file and its signature beside it.

    The model goes to `path` (a .skops file), the signature, `metadata`, the
    model file name and its sha256 to `path.with_suffix(".signature.json")`;
    both are written atomically (temporary file + rename).  The normalised
    archive is loaded back with `skops.io.loads` before anything is written, and
    refused (ArtifactError) when it holds a type `load_model` would refuse
    (`trusted` extends the reviewed list as in `load_model`).

    Returns
    -------
    str
        The sha256 hex digest of the .skops bytes.
    """
    path = Path(path)
    data = _normalise_skops(sio.dumps(pipeline))
    where = str(path)
    untrusted = _trusted_types(data, where, trusted)
    try:
        sio.loads(data, trusted=untrusted)
    except Exception as exc:
        raise ArtifactError(f"{where}: the normalised archive does not load ({exc})") from exc
    digest = _sha256(data)
    sidecar = signature.to_dict() | {
        "metadata": metadata or {},
        "model_file": path.name,
        "model_sha256": digest,
    }
    _write_atomic(path, data)
    text = json.dumps(sidecar, sort_keys=True, indent=2, default=str) + "\n"
    _write_atomic(signature_path(path), text.encode())
    return digest


def load_model(
    path: Path, expected_sha256: str | None = None, *, trusted: Iterable[str] = ()
) -> tuple[Pipeline, Signature]:
    """Load a model saved by `save_model`, checking its hash and types first.

    The sha256 of the file is compared with `expected_sha256` (when given) and
    with the one recorded in the signature file before anything is
    deserialised; then every type, function and partial of the archive must be
    on the reviewed list of `hortus.models._trust` or in `trusted` (a project's
    `trusted_model_types`, see `hortus.models._trust.project_trust`).  Any
    mismatch raises ArtifactError naming what was refused; nothing is built.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read the model file ({exc})") from exc
    _check_expected(data, expected_sha256, str(path))  # before the signature file is read
    side = signature_path(path)
    try:
        sidecar = side.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"{side}: cannot read the model signature ({exc})") from exc
    return load_model_bytes(
        data, sidecar, where=str(path), side=str(side), expected_sha256=expected_sha256,
        trusted=trusted,
    )  # fmt: skip


def _check_expected(data: bytes, expected_sha256: str | None, where: str) -> str:
    """Return the sha256 of `data`; raise ArtifactError when it is not the expected one."""
    actual = _sha256(data)
    if expected_sha256 is not None and actual != expected_sha256:
        raise ArtifactError(
            f"{where}: sha256 mismatch, expected {expected_sha256}, actual {actual}; "
            "the file was changed or is not the registered model, refusing to load it"
        )
    return actual


def load_model_bytes(
    data: bytes,
    sidecar: bytes,
    *,
    where: str,
    side: str,
    expected_sha256: str | None = None,
    trusted: Iterable[str] = (),
) -> tuple[Pipeline, Signature]:
    """Load a model from its bytes and its signature file's bytes (e.g. objects in a bucket).

    The same checks as `load_model`, in the same order, before anything is built:
    the sha256 against `expected_sha256` and the one the signature records, then the
    reviewed types; `where` and `side` name the two in errors.  skops only, no pickle.
    """
    actual = _check_expected(data, expected_sha256, where)
    try:
        doc = json.loads(sidecar.decode("utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{side}: cannot read the model signature ({exc})") from exc
    recorded = doc.get("model_sha256")
    if recorded is not None and recorded != actual:
        raise ArtifactError(
            f"{where}: sha256 mismatch, expected {recorded} (recorded in "
            f"{side.rsplit('/', 1)[-1]}), actual {actual}; refusing to load it"
        )
    untrusted = _trusted_types(data, where, trusted)
    try:
        pipeline = sio.loads(data, trusted=untrusted)
    except Exception as exc:
        raise ArtifactError(f"{where}: cannot load the model ({exc})") from exc
    if not isinstance(pipeline, Pipeline):
        raise ArtifactError(f"{where}: holds a {type(pipeline).__name__}, not a Pipeline")
    return pipeline, Signature.from_dict(doc)


def score_frame(
    pipeline: Pipeline, signature: Signature, df: pl.DataFrame, spec: ModelSpec
) -> pl.DataFrame:
    """Validate `df` against the signature, then return it with the output columns.

    Ranking adds "score"; binary "prediction" and "score"; multiclass
    "prediction", "score" and "proba_<class>" per class; regression
    "prediction" and "score" (see `predict`).  Raises SignatureError (and
    returns nothing) when the frame has a blocking problem; existing output
    columns are replaced.
    """
    if signature.names != list(spec.features):
        raise SignatureError(
            f"the model signature lists {signature.names} but the spec features are "
            f"{list(spec.features)}"
        )
    signature.validate(df)
    if spec.task == "ranking":
        return df.with_columns(pl.Series(SCORE, predict_scores(pipeline, df, spec)))
    return df.with_columns(predict(pipeline, df, spec).get_columns())
