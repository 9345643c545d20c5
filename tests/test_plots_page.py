"""docs/plots.html (`hortus docs`): every `dvc plots show --json` plot as inline SVG, offline."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hortus.config import Paths
from hortus.publishing._plots_page import DvcPlots, dvc_plots, plots_page
from hortus.publishing.notebooks import check_offline
from hortus.publishing.site import build_site

DVC = Path(sys.executable).with_name("dvc")
HREF = re.compile(r"""\bhref\s*=\s*'([^']*)'""")

DVC_YAML = """\
plots:
  - loss.csv:
      x: step
      y: loss
  - accuracy.csv:
      x: step
      y: acc
"""


def _dvc_project(root: Path) -> Path:
    """Make `root` a DVC project (no git) with two CSV plots declared in dvc.yaml."""
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    subprocess.run(
        [str(DVC), "init", "--no-scm", "-q"], cwd=root, env=env, check=True, capture_output=True
    )
    (root / "loss.csv").write_text("step,loss\n0,1.0\n1,0.5\n2,0.3\n3,0.25\n")
    (root / "accuracy.csv").write_text("step,acc\n0,0.5\n1,0.7\n2,0.8\n")
    (root / "dvc.yaml").write_text(DVC_YAML)
    return root


@pytest.mark.integration
def test_every_dvc_plot_is_one_inline_svg_and_the_page_is_offline(tmp_path):
    """Check that each plot dvc returns is drawn as one <svg>, with no script anywhere."""
    root = _dvc_project(tmp_path)
    found = dvc_plots(root)
    assert found.problem is None and not found.errors
    assert set(found.plots) == {"loss.csv", "accuracy.csv"}
    page = plots_page(root, found)
    check_offline(page, source=root / "plots.html")
    assert "<script" not in page.lower()
    assert page.count("<svg") == 2
    assert "hortus-chart-data" not in page  # drawn, not fallen back to a data table
    assert page == plots_page(root)  # the same project gives the same bytes


@pytest.mark.integration
def test_a_missing_plot_file_is_listed_with_dvc_s_error(tmp_path):
    """Check that a declared plot whose file is missing is reported, the others drawn."""
    root = _dvc_project(tmp_path)
    (root / "accuracy.csv").unlink()
    page = plots_page(root)
    check_offline(page, source=root / "plots.html")
    assert page.count("<svg") == 1
    assert "Plots dvc could not load" in page and "accuracy.csv" in page


def test_no_dvc_yaml_says_so(tmp_path):
    """Check that a project without dvc.yaml gets a page saying so (dvc is not run)."""
    page = plots_page(tmp_path)
    check_offline(page, source=tmp_path / "plots.html")
    assert "No plots: the project has no dvc.yaml" in page
    assert "<svg" not in page


@pytest.mark.integration
def test_a_dvc_yaml_dvc_cannot_read_is_reported(tmp_path):
    """Check that a corrupt dvc.yaml gives a page with dvc's error, not a crash."""
    root = _dvc_project(tmp_path)
    (root / "dvc.yaml").write_text("plots: [unclosed\n")
    page = plots_page(root)
    check_offline(page, source=root / "plots.html")
    assert "<svg" not in page and "YAMLSyntaxError" in page


@pytest.mark.parametrize("dvc", ["/bin/false", "/nonexistent/dvc"])
def test_dvc_failing_is_reported_not_raised(tmp_path, monkeypatch, dvc):
    """Check that dvc exiting non-zero, or missing, is said on the page."""
    (tmp_path / "dvc.yaml").write_text(DVC_YAML)
    monkeypatch.setattr("hortus.publishing._plots_page._dvc", lambda: dvc)
    found = dvc_plots(tmp_path)
    assert found.problem and not found.plots
    page = plots_page(tmp_path, found)
    check_offline(page, source=tmp_path / "plots.html")
    assert "No plots: `dvc plots show --json`" in page


def test_unrenderable_and_unknown_plots_do_not_break_the_page(tmp_path):
    """Check that a spec vl-convert refuses shows its data and an unknown type is named."""
    bad = {"mark": "nonsense", "data": {"values": [{"a": 1}]}}
    found = DvcPlots(
        plots={"x": [{"type": "vega", "content": bad}], "y": [{"type": "other"}]},
        errors=[{"name": "z", "rev": "workspace", "type": "E", "msg": "<boom>"}],
    )
    page = plots_page(tmp_path, found)
    check_offline(page, source=tmp_path / "plots.html")
    assert "hortus-chart-data" in page and "plot of type other" in page
    assert "&lt;boom&gt;" in page


@pytest.mark.integration
def test_hortus_docs_writes_the_plots_page_linked_from_the_index(tmp_path, lakehouse):
    """Check that build_site writes docs/plots.html and reports/index.html links it."""
    paths: Paths = lakehouse.paths
    _dvc_project(paths.root)
    summary = build_site(paths, lakehouse)
    assert "reports/docs/plots.html" in summary["pages"]
    plots = paths.reports / "docs" / "plots.html"
    assert plots.read_text(encoding="utf-8").count("<svg") == 2
    index = paths.reports / "index.html"
    links = HREF.findall(index.read_text(encoding="utf-8"))
    assert "docs/plots.html" in links
    for href in links:
        target = href.split("#")[0]
        if target:
            assert (index.parent / target).resolve().is_file(), href
