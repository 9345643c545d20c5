"""Which lakehouse table a filesystem path names, so that no path read bypasses the policy.

Commands that accept a file or folder (`hortus drift`, `hortus init --from`) call
`table_at` first.  A path inside a Hortus lakehouse is never read as a file:

- a table's own folder resolves to its catalog name, to be read with
  `Lakehouse.scan` (policy, masking, row filters, audit);
- anything else inside a lakehouse (a Parquet file of a table, `_delta_log`, a
  layer folder such as `lakehouse/restricted/bronze`, the lakehouse itself or a
  folder holding it, the registry's artifacts) is refused with `LakehousePathError`,
  which says to read the table by name;
- a Delta table whose commits carry Hortus lineage (`hortus.stage`) but that lies
  in no project found (a copy, a moved folder) is refused the same way.

A lakehouse is found from the project root given (or discovered from the working
directory, honouring HORTUS_LAKEHOUSE) and from every folder above the path that
holds a `hortus.yaml`.  Symbolic links are resolved first, so a link to a table is
the table.  Plain files elsewhere are left to the caller.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from hortus.config import Paths
from hortus.errors import HortusError

PROJECT_FILE = "hortus.yaml"
LINEAGE_KEY = "hortus.stage"


class LakehousePathError(HortusError):
    """A path inside a lakehouse that is not read through the table API."""


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _delta_root(path: Path) -> Path | None:
    """Return the Delta table folder holding `path` (itself included), or None."""
    for folder in (path, *path.parents):
        if (folder / "_delta_log").is_dir():
            return folder
    return None


def _candidates(path: Path, root: Path | None) -> list[Paths]:
    out: list[Paths] = []
    with contextlib.suppress(HortusError, OSError):  # no project here: only those above
        out.append(Paths.at(root) if root is not None else Paths.discover())
    for folder in path.parents if path.is_file() else (path, *path.parents):
        if (folder / PROJECT_FILE).is_file():
            out.append(Paths.at(folder))
    return out


def _catalog_tables(paths: Paths) -> dict[Path, str]:
    from hortus.lakehouse.catalog import Catalog

    try:
        catalog = Catalog.load(root=paths.root)
    except (HortusError, OSError) as exc:
        raise LakehousePathError(
            f"{paths.lakehouse} is a Hortus lakehouse but its catalog does not load ({exc}); "
            "its tables are read by name through the table API only"
        ) from None
    return {
        paths.table(c.layer, c.name).resolve(): name
        for name in catalog.names()
        for c in [catalog.get(name)]
    }


def _has_hortus_lineage(table: Path) -> bool:
    from deltalake import DeltaTable

    try:
        history = DeltaTable(str(table)).history(5)
    except Exception:  # not a readable Delta table: the caller's reader reports it
        return False
    return any(LINEAGE_KEY in commit for commit in history)


def table_at(spec: str | Path, root: Path | None = None) -> tuple[Paths, str] | None:
    """Return (the project's paths, table name) for a lakehouse table folder; None outside.

    Raises LakehousePathError for any other path inside (or holding) a lakehouse, and
    for a Hortus-written Delta table outside every project found (module docstring).

    Examples
    --------
    >>> table_at("lakehouse/silver/customers")  # doctest: +SKIP
    (Paths(root=..., lakehouse=...), 'silver.customers')
    """
    path = Path(spec).expanduser()
    if not path.exists():
        return None
    path = path.resolve()
    table = _delta_root(path)
    for paths in _candidates(path, root):
        lake = paths.lakehouse.resolve()
        if not lake.is_dir():
            continue
        if _inside(lake, path) and path != lake:
            raise LakehousePathError(
                f"{spec} holds the lakehouse {lake}: its tables are read by name through the "
                "table API (policy, masking, audit), not as files"
            )
        if not _inside(path, lake):
            continue
        name = _catalog_tables(paths).get(table) if table is not None else None
        if name is not None and path == table:
            return paths, name
        what = f"part of table {name}" if name else "not a table of its catalog"
        hint = f"name the table ({name})" if name else "name a catalogued table"
        raise LakehousePathError(
            f"{spec} lies inside the lakehouse {lake} ({what}); lakehouse data is read "
            f"through the table API only (policy, masking, audit): {hint} instead of a path"
        )
    if table is not None and _has_hortus_lineage(table):
        raise LakehousePathError(
            f"{spec} is a Delta table written by Hortus (its commits carry hortus lineage) "
            "outside any project found: read it by table name from its project, where the "
            "access policy applies"
        )
    return None
