"""Run marimo notebooks headless through papermill, keeping the executed notebook.

`run_notebook` exports a marimo notebook to ipynb (`marimo export ipynb`, cells in
topological order), tags the cell whose first line is `# parameters` with the
papermill `parameters` tag, and executes it with papermill on the `python3`
kernel; papermill injects the given values right after that cell.  The executed
notebook is the run's record.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import nbformat

from hortus.errors import HortusError

PARAMETERS_MARKER = "# parameters"
KERNEL = "python3"


def notebook_path(root: Path, name: str) -> Path:
    """Return notebooks/<name>.py, or raise naming the notebooks that exist."""
    path = root / "notebooks" / f"{Path(name).stem}.py"
    if not path.exists():
        known = sorted(p.stem for p in (root / "notebooks").glob("*.py"))
        raise HortusError(f"no notebook {path}; known notebooks: {', '.join(known) or 'none'}")
    return path


def export_ipynb(notebook: Path, out: Path) -> nbformat.NotebookNode:
    """Export a marimo notebook to ipynb and tag its parameters cell; return the notebook."""
    env = os.environ | {"MARIMO_SKIP_UPDATE_CHECK": "1"}
    marimo = Path(sys.executable).with_name("marimo")
    cmd = [str(marimo), "export", "ipynb", str(notebook), "-o", str(out), "--sort", "topological"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out.exists():
        raise HortusError(f"marimo export of {notebook} failed: {done.stderr.strip()[-2000:]}")
    nb = nbformat.read(out, as_version=4)
    tagged = 0
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.lstrip().startswith(PARAMETERS_MARKER):
            tags = cell.metadata.setdefault("tags", [])
            if "parameters" not in tags:
                tags.append("parameters")
            tagged += 1
    if tagged != 1:
        raise HortusError(
            f"{notebook}: expected exactly one cell starting with {PARAMETERS_MARKER!r}, "
            f"found {tagged}"
        )
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, out)
    return nb


def run_notebook(
    notebook: Path,
    output: Path,
    parameters: dict[str, Any],
    *,
    cwd: Path,
    timeout: int = 1800,
) -> Path:
    """Execute a marimo notebook headless with papermill; write the executed ipynb to output."""
    import papermill as pm

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{notebook.stem}.ipynb"
        export_ipynb(notebook, source)
        try:
            pm.execute_notebook(
                str(source),
                str(output),
                parameters=parameters,
                kernel_name=KERNEL,
                cwd=str(cwd),
                progress_bar=False,
                log_output=False,
                execution_timeout=timeout,
            )
        except pm.PapermillExecutionError as exc:
            raise HortusError(
                f"notebook {notebook.name} failed in cell {exc.exec_count}: {exc.ename}: "
                f"{exc.evalue} (executed notebook kept at {output})"
            ) from None
    return output
