"""Charts in published HTML: every altair chart of a notebook is inline SVG, shown once.

Published pages (`hortus notebooks run`, `hortus notebooks publish`) are static and
offline.  The charts are counted in the executed notebook independently of the
renderer (Vega-Lite mime bundles, marimo's mime renderer and altair chart elements,
altair's own HTML embed; one chart per output however many representations carry it),
and the page must show each of them exactly once as `<figure data-chart=ID>` holding a
well-formed `<svg>`, with no data-table fallback.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

import test_model_report_notebook as model_report_notebook
from hortus.cli.core import main
from hortus.publishing.notebooks import (
    _sanitize,
    _vl_version,
    chart_html,
    chart_id,
    check_offline,
    static_output_html,
)

loans = model_report_notebook.loans  # module fixture: the loan project of the report tests
VEGALITE = re.compile(r"application/vnd\.vegalite\.v\d+\+json")
FIGURE_ID = re.compile(r"""<figure class=["']hortus-chart[^>]*data-chart=["'](\w+)["']""")

SPEC = {
    "$schema": "https://vega.github.io/schema/vega-lite/v6.4.1.json",
    "title": "squares",
    "mark": "line",
    "data": {"values": [{"x": 1, "y": 1}, {"x": 2, "y": 4}, {"x": 3, "y": 9}]},
    "encoding": {
        "x": {"field": "x", "type": "quantitative"},
        "y": {"field": "y", "type": "quantitative"},
    },
}

CHARTS = """import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium", app_title="Charts")


@app.cell
def _():
    import altair as alt
    import marimo as mo
    import polars as pl

    return alt, mo, pl


@app.cell
def _():
    # parameters
    n = 4
    return (n,)


@app.cell
def _(n, pl):
    frame = pl.DataFrame({"x": pl.int_range(n, eager=True)}).with_columns(
        y=pl.col("x") ** 2, g=pl.col("x") % 2
    )
    return (frame,)


@app.cell
def _(alt, frame):
    line = alt.Chart(frame).mark_line().encode(x="x:Q", y="y:Q").properties(title="bare line")
    line
    return (line,)


@app.cell
def _(alt, frame, mo):
    bars = alt.Chart(frame).mark_bar().encode(x="x:O", y="y:Q").properties(title="stacked bars")
    mo.vstack([mo.md("## Stacked"), bars, mo.md("text after")])
    return


@app.cell
def _(alt, frame):
    _base = alt.Chart(frame).encode(x="x:Q")
    alt.layer(_base.mark_point(), _base.mark_rule().encode(y="y:Q")).facet(
        row="g:N"
    ).properties(title="layered facet")
    return


@app.cell
def _(line, mo):
    mo.ui.altair_chart(line.properties(title="interactive line"))
    return


@app.cell
def _(line):
    line
    return


if __name__ == "__main__":
    app.run()
"""


class _Specs(HTMLParser):
    """Collect the Vega-Lite specs an output's HTML carries (marimo elements, altair embed)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.specs: list[dict] = []
        self.script: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if tag == "script":
            self.script = []
        elif tag == "marimo-mime-renderer" and VEGALITE.fullmatch(
            json.loads(found.get("data-mime") or "null") or ""
        ):
            self._add(found.get("data-data"))
        elif tag == "marimo-vega":
            self._add(found.get("data-spec"))

    def _add(self, raw: str | None) -> None:
        value = json.loads(raw or "null")
        value = json.loads(value) if isinstance(value, str) else value
        if isinstance(value, dict):
            self.specs.append(value)

    def handle_data(self, data):
        if self.script is not None:
            self.script.append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self.script is not None:
            text, self.script = "".join(self.script), None
            if "vega-embed" in text and "})(" in text:
                spec, _ = json.JSONDecoder().raw_decode(text[text.rindex("})(") + 3 :])
                self.specs.append(spec)


def notebook_charts(executed: Path) -> list[dict]:
    """Return the Vega-Lite spec of every chart output of an executed notebook."""
    nb = nbformat.read(executed, as_version=4)
    specs: list[dict] = []
    for cell in nb.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = output.get("data", {})
            bundles = [data[m] for m in data if VEGALITE.fullmatch(m)]
            if bundles:  # a chart as a mime bundle: its HTML fallback is the same chart
                specs += [json.loads(b) if isinstance(b, str) else dict(b) for b in bundles]
                continue
            parser = _Specs()
            parser.feed(str(data.get("text/html", "")))
            specs += parser.specs
    return specs


def assert_charts_once_as_svg(executed: Path, page_path: Path) -> int:
    """Assert the page shows each chart of the notebook exactly once as SVG; return the count."""
    page = page_path.read_text(encoding="utf-8")
    check_offline(page, source=page_path)
    specs = notebook_charts(executed)
    assert specs, f"{executed} has no charts"
    assert page.count("<svg") >= len(specs), (page.count("<svg"), len(specs))
    assert Counter(FIGURE_ID.findall(page)) == Counter(chart_id(s) for s in specs)
    assert "chart data (static)" not in page and "hortus-chart-data" not in page
    for svg in re.findall(r"<svg\b.*?</svg>", page, re.DOTALL):
        ET.fromstring(svg)  # well formed: no element left open to swallow the marks
    n = len(specs)
    assert (f"{n} charts, each shown once, as inline SVG" if n > 1 else "1 chart") in page
    return n


# ------------------------------------------------------------------ unit (no kernel)
def test_chart_renders_as_one_svg_figure():
    """Check that a spec becomes one figure with its id and a well-formed SVG, no table."""
    fragment = chart_html(SPEC)
    assert fragment.count("<svg") == 1 and "<table" not in fragment
    assert f"data-chart='{chart_id(SPEC)}'" in fragment
    ET.fromstring(re.search(r"<svg\b.*</svg>", fragment, re.DOTALL)[0])
    assert chart_id(SPEC) == chart_id(json.loads(json.dumps(SPEC)))


def test_chart_that_cannot_render_shows_its_data_and_says_why():
    """Check the fallback: external data is refused (no network), the page names the reason."""
    remote = SPEC | {"data": {"url": "https://example.org/squares.csv"}, "datasets": {
        "d": [{"x": 4, "y": 16}]}}  # fmt: skip
    fragment = chart_html(remote)
    assert "<svg" not in fragment and "<td>4</td><td>16</td>" in fragment
    assert "chart data (static)" in fragment and "could not be rendered as SVG" in fragment
    assert "External data url not allowed" in fragment


def test_output_with_several_representations_shows_the_chart_once():
    """Check that a mime bundle plus altair's HTML embed of the same chart give one figure."""
    embed = (
        "<div id='v'></div><script>var paths={'vega-embed': "
        "'https://cdn.jsdelivr.net/npm/vega-embed@7'};(function(spec, embedOpt){})("
        + json.dumps(SPEC)
        + ", {});</script>"
    )
    output = {"output_type": "execute_result",
              "data": {"application/vnd.vegalite.v6+json": SPEC, "text/html": embed,
                       "text/plain": "alt.Chart(...)"}}  # fmt: skip
    assert static_output_html(output).count("<svg") == 1
    html_only = {"output_type": "execute_result", "data": {"text/html": embed}}
    fragment = static_output_html(html_only)
    assert fragment.count("<svg") == 1 and "cdn" not in fragment and "<script" not in fragment


def test_marimo_altair_chart_element_is_rendered():
    """Check that mo.ui.altair_chart's <marimo-vega data-spec> becomes a chart, not nothing."""
    attr = json.dumps(json.dumps(SPEC)).replace("&", "&amp;").replace("'", "&#x27;")
    fragment = static_output_html(
        {
            "output_type": "display_data",
            "data": {
                "text/html": f"<marimo-ui-element><marimo-vega data-spec='{attr}'>"
                "</marimo-vega></marimo-ui-element>"
            },
        }  # fmt: skip
    )
    assert fragment.count("<svg") == 1 and "marimo-" not in fragment


def test_sanitizer_keeps_svg_elements_closed_and_drops_external_loads():
    """Check that <rect/> stays self-closing and an external image href is dropped."""
    out = _sanitize(
        "<svg><rect width='1'/><g><image href='https://x.org/a.png'/>"
        "<image href='data:image/png;base64,AA'/></g><br/></svg>"
    )
    assert out.startswith('<svg><rect width="1"/><g><image/>') and "x.org" not in out
    assert "data:image/png" in out
    ET.fromstring(out.replace("<br>", "<br/>"))


def test_vega_lite_version_follows_the_schema():
    """Check that the bundled Vega-Lite version matching the spec's $schema is chosen."""
    known = ["5.8", "5.16", "5.20", "6.1", "6.4"]
    at = "https://vega.github.io/schema/vega-lite/v{}.json".format
    assert _vl_version({"$schema": at("6.4.1")}, known) == "6.4"
    assert _vl_version({"$schema": at("5.17.0")}, known) == "5.16"
    assert _vl_version({"$schema": at("6.9.0")}, known) == "6.4"
    assert _vl_version({"$schema": at("4.17.0")}, known) is None
    assert _vl_version({}, known) is None


# -------------------------------------------------------- integration (papermill)
@pytest.mark.integration
def test_notebook_run_shows_every_chart_once_as_svg(tmp_path: Path):
    """Check a notebook with a bare chart, a stacked one, a layered facet, a ui chart, a repeat."""
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "charts.py").write_text(CHARTS, encoding="utf-8")
    out = tmp_path / "out"
    assert main(["--root", str(tmp_path), "notebooks", "run", "charts", "--out", str(out)]) == 0
    assert assert_charts_once_as_svg(out / "charts.ipynb", out / "charts.html") == 5
    page = (out / "charts.html").read_text(encoding="utf-8")
    assert len(set(FIGURE_ID.findall(page))) == 4  # `line` is shown twice by the notebook


@pytest.mark.integration
def test_published_model_report_shows_every_chart_once_as_svg(loans, monkeypatch, capsys):
    """Check `hortus notebooks publish` (the model report): as many SVG charts as altair charts."""
    monkeypatch.setenv("HORTUS_ROOT", str(loans.root))
    monkeypatch.setenv("HORTUS_USER", "pipeline")
    monkeypatch.setenv("HORTUS_CONTRACTS", str(loans.root / "contracts.yaml"))
    out = loans.root / "charts_out"
    argv = ["--root", str(loans.root), "notebooks", "publish", "champion", "--model", "risk",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    folder = out / "risk" / "2"
    n = assert_charts_once_as_svg(folder / "model_report.ipynb", folder / "model_report.html")
    assert n >= 4  # segments, importance, fairness, drift
