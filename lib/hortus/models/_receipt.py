"""The build receipt of a model version: what it takes to rebuild it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from hortus.errors import HortusError
from hortus.models._registry_base import sha256_file
from hortus.provenance import git_state


@dataclass(frozen=True)
class Receipt:
    """The build receipt of a model version: what it takes to rebuild it.

    Examples
    --------
    >>> r = Receipt.collect(root, params={"C": 1}, tables_read={"gold.train": 3})  # doctest: +SKIP
    >>> r.git_commit, r.data_md5                                           # doctest: +SKIP
    ('1f3c...', 'f2132778b7357b1bf2e2d054b81696a0.dir')
    """

    git_commit: str
    git_dirty: bool
    dvc_lock_sha256: str | None
    data_md5: str | None
    uv_lock_sha256: str | None
    params: dict
    tables_read: dict[str, int]
    content_hashes: dict[str, str] | None = None

    @classmethod
    def collect(
        cls,
        root: Path,
        *,
        params: dict,
        tables_read: dict[str, int],
        content_hashes: dict[str, str] | None = None,
    ) -> Receipt:
        """Collect the receipt of a build in the project at `root`.

        Git state is read fresh (not the per-process cache of table writes): a
        receipt must describe the tree as it is now.  Lock-file digests are
        None when the file is absent; `data_md5` is the md5 that data.dvc pins
        for `data`, or None without data.dvc.
        """
        root = Path(root)
        sha, dirty = git_state.__wrapped__(root)

        def digest(name: str) -> str | None:
            path = root / name
            return sha256_file(path) if path.is_file() else None

        return cls(
            git_commit=sha,
            git_dirty=dirty,
            dvc_lock_sha256=digest("dvc.lock"),
            data_md5=_data_md5(root / "data.dvc"),
            uv_lock_sha256=digest("uv.lock"),
            params=dict(params),
            tables_read={str(k): int(v) for k, v in tables_read.items()},
            content_hashes=dict(content_hashes) if content_hashes else None,
        )

    @classmethod
    def from_dict(cls, d: dict) -> Receipt:
        """Rebuild a receipt from `to_dict()` output (e.g. a registry row)."""
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})

    def to_dict(self) -> dict:
        """Return a JSON-friendly dict."""
        return asdict(self)


def _data_md5(dvc_file: Path) -> str | None:
    if not dvc_file.is_file():
        return None
    try:
        doc = yaml.safe_load(dvc_file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise HortusError(f"{dvc_file}: not valid YAML: {exc}") from None
    outs = doc.get("outs") if isinstance(doc, dict) else None
    for out in outs or []:
        if isinstance(out, dict) and out.get("path") == "data":
            return out.get("md5")
    return None
