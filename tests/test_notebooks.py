"""`hortus notebooks run`: parameters injected by papermill, executed ipynb and offline HTML.

The demo notebook is written into a temporary project; nothing here needs the lakehouse.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from hortus.cli.core import main
from hortus.errors import HortusError
from hortus.publishing.notebooks import check_offline, parse_parameters, static_output_html

pytestmark = pytest.mark.integration

DEMO = '''import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Demo")


@app.cell
def _():
    import altair as alt
    import marimo as mo
    import polars as pl

    return alt, mo, pl


@app.cell
def _():
    # parameters
    n = 3
    title = "a"
    return n, title


@app.cell
def _(mo, n, title):
    mo.md(f"""
    # Demo report

    Parameters: n = **{n}**, title = **{title}**
    """)
    return


@app.cell
def _(n, pl):
    frame = pl.DataFrame({"x": pl.int_range(n, eager=True)}).with_columns(
        y=pl.col("x") ** 2
    )
    return (frame,)


@app.cell
def _(alt, frame, mo, title):
    chart = (
        alt.Chart(frame)
        .mark_line()
        .encode(x="x:Q", y="y:Q")
        .properties(title=f"squares for {title}")
    )
    mo.vstack([mo.md("## Chart"), chart])
    return


if __name__ == "__main__":
    app.run()
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A temporary project holding notebooks/demo.py."""
    root = tmp_path_factory.mktemp("nbproject")
    (root / "notebooks").mkdir()
    (root / "notebooks" / "demo.py").write_text(DEMO, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def runs(project: Path) -> dict[str, Path]:
    """Run the demo once with defaults (--out) and once with -p n=5 -p title=zz."""
    default_dir = project / "default_run"
    assert (
        main(["--root", str(project), "notebooks", "run", "demo", "--out", str(default_dir)]) == 0
    )
    argv = ["--root", str(project), "notebooks", "run", "demo", "-p", "n=5", "-p", "title=zz"]
    assert main(argv) == 0
    return {"default": default_dir, "given": project / "reports" / "notebooks"}


def _outputs_text(nb: nbformat.NotebookNode) -> str:
    return json.dumps([c.get("outputs", []) for c in nb.cells])


def test_run_injects_parameters_into_executed_notebook(runs):
    """Check that -p values land in an injected-parameters cell and change the outputs."""
    given = nbformat.read(runs["given"] / "demo.ipynb", as_version=4)
    default = nbformat.read(runs["default"] / "demo.ipynb", as_version=4)
    injected = [c for c in given.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1
    assert "n = 5" in injected[0].source and 'title = "zz"' in injected[0].source
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in default.cells)
    assert "<strong>5</strong>" in _outputs_text(given)
    assert "<strong>zz</strong>" in _outputs_text(given)
    assert "<strong>3</strong>" in _outputs_text(default)
    assert "<strong>zz</strong>" not in _outputs_text(default)


def test_run_publishes_offline_html_with_chart(runs):
    """Check that the HTML shows the chart once as inline SVG and loads nothing external."""
    page = (runs["given"] / "demo.html").read_text(encoding="utf-8")
    check_offline(page, source=runs["given"] / "demo.html")
    assert "squares for zz" in page
    assert page.count("<svg") == 1 and "chart data (static)" not in page
    assert "1 chart, shown once, as inline SVG" in page
    # the 5 points of the parameterised frame are plotted: the y axis runs to 16
    svg = page[page.index("<svg") : page.index("</svg>")]
    assert re.search(r">16(\.0)?</text>", svg), svg[-2000:]
    assert "<strong>zz</strong>" in page
    assert "<script" not in page.lower()
    assert 'src="http' not in page and "src='http" not in page
    assert "cdn" not in page.lower()
    default_page = (runs["default"] / "demo.html").read_text(encoding="utf-8")
    assert "squares for a" in default_page and default_page.count("<svg") == 1
    default_svg = default_page[default_page.index("<svg") : default_page.index("</svg>")]
    assert not re.search(r">16(\.0)?</text>", default_svg)  # n = 3: y runs to 4


def test_run_refuses_unknown_parameter(project, capsys):
    """Check that a name not assigned in the parameters cell exits 2 listing the known ones."""
    argv = ["--root", str(project), "notebooks", "run", "demo", "-p", "m=1", "--out",
            str(project / "refused")]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown parameter(s) m" in err and "n, title" in err
    assert not (project / "refused").exists()


def test_run_refuses_unknown_notebook(project, capsys):
    """Check that a missing notebook exits 2 naming the notebooks that exist."""
    assert main(["--root", str(project), "notebooks", "run", "nope"]) == 2
    assert "known notebooks: demo" in capsys.readouterr().err


def test_parse_parameters_reads_yaml_scalars_and_refuses_collections():
    """Check that values become int/float/bool/str/None and lists or bad pairs are refused."""
    got = parse_parameters(["n=5", "rate=1e-3", "fast=false", "title=zz", "empty=", "none=null"])
    assert got == {"n": 5, "rate": 0.001, "fast": False, "title": "zz", "empty": "", "none": None}
    assert type(got["n"]) is int and type(got["rate"]) is float
    with pytest.raises(HortusError, match="only scalars"):
        parse_parameters(["n=[1, 2]"])
    with pytest.raises(HortusError, match="expected key=value"):
        parse_parameters(["n"])
    with pytest.raises(HortusError, match="given twice"):
        parse_parameters(["n=1", "n=2"])


def test_static_output_strips_scripts_and_keeps_marimo_content():
    """Check that scripts and external sources go, marimo markdown and tables stay readable."""
    fragment = static_output_html(
        {
            "output_type": "execute_result",
            "data": {
                "text/html": (
                    '<script src="https://cdn.example/x.js"></script>'
                    '<img src="https://example.org/a.png"><b>kept</b>'
                    "<marimo-ui-element><marimo-table data-data='&quot;[{&#92;&quot;a&#92;&quot;"
                    ":1}]&quot;'></marimo-table></marimo-ui-element>"
                ),
                "text/plain": "fallback",
            },
        }
    )
    assert "<b>kept</b>" in fragment and "<td>1</td>" in fragment
    assert "script" not in fragment and "http" not in fragment and "marimo-" not in fragment
    only_js = static_output_html(
        {
            "output_type": "display_data",
            "data": {"text/html": "<marimo-x></marimo-x>", "text/plain": "plain words"},
        }  # fmt: skip
    )
    assert only_js == "<pre>plain words</pre>"


def test_check_offline_refuses_external_script():
    """Check that a page with an external script is refused, naming the file."""
    check_offline("<p>fine <a href='https://example.org'>link</a></p>", source=Path("x.html"))
    with pytest.raises(HortusError, match=r"x\.html: HTML is not offline-safe"):
        check_offline(
            '<script src="https://cdn.jsdelivr.net/npm/vega"></script>', source=Path("x.html")
        )


def test_demo_notebook_passes_marimo_check(project):
    """Check that `marimo check` finds nothing wrong in the demo notebook."""
    marimo = Path(sys.executable).with_name("marimo")
    done = subprocess.run(
        [str(marimo), "check", str(project / "notebooks" / "demo.py")],
        capture_output=True, text=True, env={"MARIMO_SKIP_UPDATE_CHECK": "1", "PATH": ""},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert not re.search(r"(error|warning)", done.stdout, re.IGNORECASE), done.stdout


def test_demo_notebook_runs_as_script(project):
    """Check that the demo notebook also runs as a plain Python script."""
    done = subprocess.run(
        [sys.executable, str(project / "notebooks" / "demo.py")],
        capture_output=True, text=True, cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_strip_volatile_removes_times_random_ids_and_keeps_outputs(tmp_path):
    """Check that two executions differing only in times and random ids become equal bytes."""
    import json

    from hortus.publishing.notebooks import strip_volatile

    def executed(stamp: str, uuid: str, cell_id: str) -> dict:
        cell = {
            "cell_type": "code", "id": cell_id, "execution_count": 1, "source": "x",
            "metadata": {"tags": ["injected-parameters"], "execution": {"t": stamp},
                         "papermill": {"start_time": stamp, "duration": 1.5, "status": "ok"}},
            "outputs": [{"output_type": "display_data", "metadata": {},
                         "data": {"text/html": f"<marimo-ui-element object-id='{uuid}' "
                                               f"random-id='{uuid}'>5</marimo-ui-element>"}}],
        }  # fmt: skip
        meta = {"papermill": {"start_time": stamp, "input_path": f"/tmp/{stamp}/x.ipynb",
                              "parameters": {"k": 5}}}  # fmt: skip
        return {"cells": [cell], "metadata": meta, "nbformat": 4, "nbformat_minor": 5}

    paths = []
    for i, (stamp, uuid, cid) in enumerate(
        [("2026-01-01T00:00:00", "28f39d39-54ee-a54d-a716-1df17882c4d7", "d9154e09"),
         ("2026-02-02T11:11:11", "64d73ef1-8a4b-b368-ea28-f8017e6b34fb", "c792974b")]
    ):  # fmt: skip
        path = tmp_path / f"run{i}.ipynb"
        path.write_text(json.dumps(executed(stamp, uuid, cid)))
        strip_volatile(path)
        paths.append(path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
    nb = json.loads(paths[0].read_text())
    assert nb["metadata"]["papermill"] == {"parameters": {"k": 5}}
    assert "5</marimo-ui-element>" in nb["cells"][0]["outputs"][0]["data"]["text/html"]
