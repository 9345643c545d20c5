"""Project paths, anchored at the project root, and the environment switches.

Every path the library uses comes from `Paths`; nothing else reads the
environment for locations.  `HORTUS_ROOT` overrides the project root (found by
walking up from the working directory to the folder holding `dvc.yaml` or
`pyproject.toml`), `HORTUS_LAKEHOUSE` the lakehouse root: a folder, or an object-store
URI (`s3://bucket/prefix`: the Delta tables and leases live there, read through
`hortus.lakehouse._objstore`; local-only outputs stay under `.hortus/objstore/`).
The access policy is always `<root>/access_policy.yaml` (reviewed with the code; no
environment override, so nobody swaps the policy for a process by setting a variable).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hortus.errors import HortusError

LAYERS = ("bronze", "quarantine", "silver", "gold", "ops")
RESTRICTED_LAYERS = ("bronze", "quarantine")
POLICY_FILE = "access_policy.yaml"


def find_root(start: Path | None = None) -> Path:
    """Return the project root: `HORTUS_ROOT`, else the nearest folder with dvc.yaml."""
    if env := os.environ.get("HORTUS_ROOT"):
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").exists() or (folder / "pyproject.toml").exists():
            return folder
    return here


@dataclass(frozen=True)
class Paths:
    """Locations of the landing cache, lakehouse, reports and secrets.

    Examples
    --------
    >>> p = Paths.at(Path("/tmp/proj"))
    >>> str(p.table("silver", "events"))
    '/tmp/proj/lakehouse/silver/events'
    """

    root: Path
    lakehouse: Path
    # the object-store URI of the lakehouse (s3://bucket/prefix), None on local disk;
    # `lakehouse` is then a local folder for what cannot live there (the SQLite online store)
    lakehouse_uri: str | None = None

    @classmethod
    def at(cls, root: Path, lakehouse: Path | str | None = None) -> Paths:
        """Build paths for a project root (lakehouse defaults to root/lakehouse).

        `lakehouse` (or HORTUS_LAKEHOUSE) may be an object-store URI, `s3://bucket/prefix`.
        """
        root = Path(root).resolve()
        spec = lakehouse or os.environ.get("HORTUS_LAKEHOUSE") or root / "lakehouse"
        if isinstance(spec, str) and "://" in spec:
            uri = spec.rstrip("/")
            return cls(root=root, lakehouse=root / ".hortus" / "objstore", lakehouse_uri=uri)
        return cls(root=root, lakehouse=Path(spec).resolve())

    @property
    def lakehouse_root(self) -> Path | str:
        """Return where the tables live: the object-store URI, else the lakehouse folder."""
        return self.lakehouse_uri or self.lakehouse

    @classmethod
    def discover(cls) -> Paths:
        """Build paths for the project containing the working directory."""
        return cls.at(find_root())

    @property
    def data(self) -> Path:
        """Landing cache pinned by data.dvc."""
        return self.root / "data"

    @property
    def reports(self) -> Path:
        """Generated reports (DVC outputs and published notebooks)."""
        return self.root / "reports"

    @property
    def secrets(self) -> Path:
        """Git-ignored folder for local secrets (keys)."""
        return self.root / ".hortus" / "secrets"

    @property
    def policy(self) -> Path:
        """Access policy of the project (policy as code, at the root beside dvc.yaml)."""
        return self.root / POLICY_FILE

    @property
    def online_store(self) -> Path:
        """SQLite online feature store (a build output, materialised from gold)."""
        return self.lakehouse / "online" / "features.sqlite"

    def layer(self, layer: str) -> Path:
        """Return the folder of a lakehouse layer; bronze and quarantine are restricted."""
        if layer not in LAYERS:
            raise ValueError(f"unknown layer {layer!r}; expected one of {', '.join(LAYERS)}")
        if layer in RESTRICTED_LAYERS:
            return self.lakehouse / "restricted" / layer
        return self.lakehouse / layer

    def table(self, layer: str, name: str) -> Path:
        """Return the folder of one Delta table (a lakehouse on local disk only).

        On object storage there is no such folder: refused with a clear error rather
        than a path to an empty local folder (use `table_uri` and the table API).
        """
        if self.lakehouse_uri is not None:
            raise HortusError(
                f"table {layer}.{name} lives on object storage ({self.table_uri(layer, name)}), "
                "not in a local folder: this operation needs a lakehouse on local disk "
                "(docs/object-storage.md says what runs on object storage)"
            )
        return self.layer(layer) / name

    def table_uri(self, layer: str, name: str) -> str:
        """Return the location of one Delta table: its folder, or its object-store URI."""
        if self.lakehouse_uri is None:
            return str(self.table(layer, name))
        rel = (self.layer(layer) / name).relative_to(self.lakehouse).as_posix()
        return f"{self.lakehouse_uri}/{rel}"


def progress_wanted() -> bool:
    """Return whether progress output is wanted: only when stderr is a terminal.

    Logs, pipes, CI and tests stay clean; HORTUS_PROGRESS=0 switches it off on a
    terminal too.  Used by the CLI's spinners and papermill's cell progress bar.
    """
    import sys

    if os.environ.get("HORTUS_PROGRESS", "") == "0":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
