"""The generated documentation site (`hortus docs`): params comments, DAG, pages, index links."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import with_policy
from hortus.cli.core import main
from hortus.config import Paths
from hortus.errors import HortusError
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.tables import Lakehouse
from hortus.models.registry import Registry
from hortus.publishing.notebooks import check_offline
from hortus.publishing.site import (
    PAGES,
    architecture_page,
    layered_layout,
    load_stages,
    models_page,
    parse_dot,
    parse_param_comments,
    undocumented,
)
from test_registry import SIGNATURE, _artifact, _receipt, approve, pass_gate

ROOT = Path(__file__).resolve().parents[1]
DVC = Path(sys.executable).with_name("dvc")
EXTERNAL = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)
HREF = re.compile(r"""\bhref\s*=\s*'([^']*)'""")

PARAMS = """\
# header of the file, separated by a blank line

# the first section
alpha:
  # the seed
  # of everything
  seed: 3
  rate: 0.5  # per day
  # said above
  both: 1  # and after
  nested:
    deep: [1, 2]  # a list
    flow: {a: 1, b: 2}
  items:
    # a comment above a list item documents no key
    - name: x  # nor does this one
      value: 2
  after: true
beta: {}
url: "http://x # not a comment"  # the real comment
gamma:
  faults: [a, b,
           c]  # inside a multi-line value
  # about the last
  last: 1
"""


def _dvc(cwd: Path, *args: str) -> str:
    env = os.environ | {"DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(
        [str(DVC), *args], cwd=cwd, capture_output=True, text=True, env=env, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


# ------------------------------------------------------------------ params
def test_param_comments_above_trailing_and_nested():
    """Check that comments above and after a key give its meaning, nested keys are dotted."""
    docs = {d.key: d for d in parse_param_comments(PARAMS)}
    assert list(docs) == [
        "alpha",
        "alpha.seed",
        "alpha.rate",
        "alpha.both",
        "alpha.nested",
        "alpha.nested.deep",
        "alpha.nested.flow",
        "alpha.items",
        "alpha.after",
        "beta",
        "url",
        "gamma",
        "gamma.faults",
        "gamma.last",
    ]
    assert (docs["alpha"].meaning, docs["alpha"].section) == ("the first section", True)
    assert docs["alpha.seed"].meaning == "the seed of everything"
    assert docs["alpha.seed"].source == "above"
    assert (docs["alpha.seed"].value, docs["alpha.seed"].line) == (3, 7)
    assert (docs["alpha.rate"].meaning, docs["alpha.rate"].source) == ("per day", "trailing")
    assert docs["alpha.both"].meaning == "said above; and after"
    assert docs["alpha.both"].source == "above+trailing"
    assert docs["alpha.nested.deep"].value == [1, 2]
    assert docs["alpha.nested.flow"].value == {"a": 1, "b": 2}  # a flow mapping is one key
    assert docs["alpha.items"].value == [{"name": "x", "value": 2}]
    assert docs["url"].value == "http://x # not a comment"
    assert docs["url"].meaning == "the real comment"
    assert docs["gamma.faults"].value == ["a", "b", "c"]
    assert docs["gamma.last"].meaning == "about the last"


def test_param_comments_flag_undocumented_keys():
    """Check that keys with no comment above or after them are flagged undocumented."""
    docs = parse_param_comments(PARAMS)
    assert undocumented(docs) == [
        "alpha.nested",
        "alpha.nested.flow",
        "alpha.items",
        "alpha.after",
        "beta",
        "gamma",
        "gamma.faults",
    ]
    assert not any(d.documented for d in docs if d.key in undocumented(docs))


def test_param_comments_refuse_what_they_cannot_read():
    """Check that invalid YAML and a key the parser cannot place fail naming file and line."""
    with pytest.raises(HortusError, match="p.yaml: not valid YAML"):
        parse_param_comments("a: [1\n", source="p.yaml")
    with pytest.raises(HortusError, match=r"p.yaml:2: cannot read a key"):
        parse_param_comments("a: 1\n? complex key\n: 2\n", source="p.yaml")


def test_every_key_of_the_repository_params_is_documented():
    """Check that every key of params.yaml has a comment giving its meaning."""
    text = (ROOT / "params.yaml").read_text(encoding="utf-8")
    docs = parse_param_comments(text, source="params.yaml")
    assert undocumented(docs) == []
    assert [d.key for d in docs if len(d.path) == 1] == list(yaml.safe_load(text))
    assert len(docs) > 50


# --------------------------------------------------------------------- DAG
def test_layered_layout_puts_every_edge_downwards():
    """Check that each edge goes to a later layer, through one virtual node per layer crossed."""
    edges = [("a", "b"), ("b", "c"), ("a", "c"), ("a", "d"), ("d", "c")]
    layers, chains = layered_layout("abcd", edges)
    at = {n: i for i, layer in enumerate(layers) for n in layer}
    for a, b in edges:
        assert at[a] < at[b]
        assert len(chains[(a, b)]) == at[b] - at[a] - 1
    with pytest.raises(HortusError, match="cycle"):
        layered_layout("ab", [("a", "b"), ("b", "a")])


@pytest.mark.integration
def test_architecture_page_shows_every_stage_and_the_dvc_dag_edges(lakehouse):
    """Check that the page has every dvc.yaml stage and every edge `dvc dag` reports."""
    dot = _dvc(ROOT, "dag", "--dot")  # read-only
    edges = re.findall(r'^"([^"]+)" -> "([^"]+)";$', dot, re.MULTILINE)
    stages = load_stages(ROOT)
    assert edges and {"ingest", "train", "gate", "docs"} <= set(stages)
    dag = parse_dot(dot)
    assert set(dag.edges) == set(edges)
    page = architecture_page(ROOT, lakehouse, dag, stages)
    check_offline(page, source=ROOT / "architecture.html")
    for name, stage in stages.items():
        assert f"id='stage-{name}'" in page
        assert f">{name}</text>" in page  # a box of the DAG drawing
        assert stage["cmd"] in page
    for a, b in edges:
        assert f"<tr><td><code>{a}</code></td><td><code>{b}</code></td></tr>" in page
        assert f"<title>{a} → {b}</title>" in page  # an arrow of the drawing
    assert page.count("marker-end='url(#arrow)'") == len(edges)
    for step in ("bronze", "silver", "gold", "features", "registry", "gate", "monitor"):
        assert f">{step}</text>" in page  # the data-flow diagram


# ------------------------------------------------------------------ models
def test_models_page_without_a_registry_or_without_the_grant(lakehouse, project):
    """Check that no registered model, and a user without read rights, each say so."""
    page = models_page(lakehouse, project.reports, project.reports / "docs")
    assert "No model registered yet" in page
    alex = Lakehouse(paths=project, catalog=lakehouse.catalog, stage="test", user="alex")
    page = models_page(alex, project.reports, project.reports / "docs")
    assert "Not readable as user alex" in page and "ops.model_versions" in page


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Paths, dict]:
    """Build a DVC project with v1 (gated, approved, champion, report) and v2 (challenger).

    Then run `hortus docs` there once (as the pipeline) and return the paths and the
    printed summary.
    """
    project = Paths.at(tmp_path_factory.mktemp("site"))
    with_policy(project.root)
    lh = Lakehouse(paths=project, catalog=Catalog.load(), stage="test", user="mia")
    reg = Registry(lh, "recommender")
    for i in (1, 2):
        path, sha = _artifact(project.root / "build", i)
        reg.register(
            path,
            sha256=sha,
            signature=SIGNATURE,
            metrics={"roc_auc": 0.7 + i / 100, "ndcg_at_k": 0.3 + i / 100},
            receipt=_receipt(i),
            alias="challenger",
        )
    pass_gate(reg, 1, project.reports / "gate" / "recommender")
    approve(reg, 1)
    reg.promote(1, reason="reviewed")
    (project.root / "dvc.yaml").write_bytes((ROOT / "dvc.yaml").read_bytes())
    (project.root / "hortus.yaml").write_bytes((ROOT / "hortus.yaml").read_bytes())
    shutil.copytree(ROOT / "docs", project.root / "docs")  # the user guide
    params = (ROOT / "params.yaml").read_text(encoding="utf-8") + "\nextra:\n  knob: 3\n"
    (project.root / "params.yaml").write_text(params, encoding="utf-8")
    _dvc(project.root, "init", "--no-scm", "-q")
    report = project.reports / "models" / "recommender" / "1"
    report.mkdir(parents=True)
    (report / "model_report.html").write_text("<!DOCTYPE html><title>v1</title>")
    card = {  # the fields of hortus.publishing.model_card.ModelCard.summary() that the docs read
        "schema": "hortus.model_card/1",
        "model": "recommender",
        "version": 1,
        "passed": True,
        "verdict": "pass",
        "failed": [],
    }
    (report / "card.json").write_text(json.dumps(card))
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
        mp.chdir(project.root)
        mp.setenv("HORTUS_USER", "pipeline")
        assert main(["docs"]) == 0
    return project, json.loads(out.getvalue())


@pytest.mark.integration
def test_hortus_docs_writes_every_page_with_resolving_links(built):
    """Check that `hortus docs` writes every page, offline, and every index link resolves."""
    project, summary = built
    params = parse_param_comments((project.root / "params.yaml").read_text(encoding="utf-8"))
    assert summary["undocumented_params"] == undocumented(params)
    assert summary["undocumented_params"][-2:] == ["extra", "extra.knob"]
    assert summary["dag_edges"] > 10
    reports = project.reports
    docs = reports / "docs"
    pages = [
        reports / "index.html",
        *(docs / name for name in PAGES),
        docs / "gate" / "recommender" / "v1.html",
        *sorted((docs / "guide").glob("*.html")),
    ]
    guide = {p.stem for p in (ROOT / "docs").glob("*.md")}
    assert guide and {p.stem for p in pages if p.parent.name == "guide"} == guide | {"index"}
    for page in pages:
        text = page.read_text(encoding="utf-8")
        check_offline(text, source=page)
        assert not EXTERNAL.search(text), page
    assert (reports / "data_dictionary.md").read_text().startswith("# Data dictionary")
    assert "silver.events" in (docs / "data_dictionary.html").read_text()
    parameters = (docs / "parameters.html").read_text()
    assert f"{len(params)} keys, <span class='undocumented'>" in parameters
    knob = "<tr id='extra.knob'><td><code>extra.knob</code></td><td><code>3</code></td>"
    assert knob in parameters
    assert "<td><span class='undocumented'>undocumented</span></td>" in parameters
    assert "<td>rows buffered before one Delta append to bronze" in parameters  # a meaning
    architecture = (docs / "architecture.html").read_text()
    assert "flowchart TD" in architecture and "-&gt;node" in architecture  # `dvc dag --md`
    assert "<title>report → docs</title>" in architecture  # `dvc dag --dot`, drawn
    index = (reports / "index.html").read_text()
    links = HREF.findall(index)
    expected = {f"docs/{name}" for name in PAGES} | {
        "data_dictionary.md",
        "models/recommender/1/model_report.html",
        "docs/gate/recommender/v1.html",
        "gate/recommender/v1.md",
        "docs/guide/index.html",
    }
    assert expected <= set(links)
    for page in pages:  # every relative link of every page resolves to a file
        for href in HREF.findall(page.read_text()):
            target = href.split("#")[0]
            if target:
                assert (page.parent / target).resolve().is_file(), (page.name, href)
    assert "checklist passes" in index


@pytest.mark.integration
def test_models_page_lists_versions_with_aliases_and_report_links(built):
    """Check that models.html lists v1 champion with its report and v2 challenger without."""
    project, _ = built
    page = (project.reports / "docs" / "models.html").read_text()
    rows = dict(re.findall(r"<tr id='recommender-v(\d+)'>(.*?)</tr>", page, re.DOTALL))
    assert set(rows) == {"1", "2"}
    assert "production: <span class='badge champion'>champion v1</span>" in page
    assert "<span class='badge champion'>champion</span>" in rows["1"]
    assert "<span class='badge challenger'>challenger</span>" in rows["2"]
    assert "champion" not in rows["2"]
    assert "<a href='../models/recommender/1/model_report.html'>model report</a>" in rows["1"]
    assert "checklist <span class='ok'>passes</span>" in rows["1"]
    assert "not published" in rows["2"] and "model_report.html" not in rows["2"]
    assert "passed" in rows["1"] and "paula" in rows["1"]  # gate and four-eyes approval
    assert "not gated" in rows["2"] and "none" in rows["2"]
    assert "roc_auc=0.71" in rows["1"] and "roc_auc=0.72" in rows["2"]
    assert "<a href='gate/recommender/v1.html'>gate report</a>" in rows["1"]


# ------------------------------------------------------------ report stage
def test_report_stage_falls_back_to_the_newest_gated_version(lakehouse, tmp_path):
    """Check that `publish champion --fallback-gated` picks the newest version whose gate passed."""
    from datetime import UTC, datetime

    from hortus.checks.gate import GateResult, record
    from hortus.checks.model_checks import CheckResult
    from hortus.cli.notebooks import newest_gated

    reg = Registry(lakehouse, "recommender")
    with pytest.raises(HortusError, match="no version passed its gate"):
        newest_gated(reg)
    for i in (1, 2, 3):
        path, sha = _artifact(tmp_path / "build", i)
        reg.register(path, sha256=sha, signature=SIGNATURE, metrics={}, receipt=_receipt(i))
    now = datetime.now(UTC)
    for version, ok in ((1, True), (2, True), (3, False)):
        check = CheckResult("smoke", ok, 1.0, 1.0, "recorded by the test")
        result = GateResult(reg.name, version, [check], started_at=now, finished_at=now)
        record(reg, result, tmp_path / "gate", git_commit="c0ffee")
    assert newest_gated(reg) == 2  # v3 failed its gate


def test_params_parser_reads_multi_line_scalars_as_yaml_dump_writes_them():
    """Check that a long value folded over lines (yaml.safe_dump's layout) is one key."""
    text = yaml.safe_dump(
        {"card": {"use": "word " * 40, "n": 2}, "top": {"k": [1, 2]}}, width=60, sort_keys=False
    )
    assert len(text.splitlines()) > 5  # the value really spans lines
    docs = {d.key: d.value for d in parse_param_comments(text)}
    assert docs == {"card": {"use": "word " * 40, "n": 2}, "card.use": "word " * 40,
                    "card.n": 2, "top": {"k": [1, 2]}, "top.k": [1, 2]}  # fmt: skip


def test_data_flow_takes_its_tables_from_the_project_definition():
    """Check that the architecture's data flow lists the tables hortus.yaml names, per step."""
    from hortus.project.definition import Project
    from hortus.publishing.site import DATA_FLOW, data_flow

    project = Project.load(ROOT)
    steps = {step: tables for step, _, tables in data_flow(project)}
    assert project.kpis.table in steps["gold"]
    assert project.examples.table in steps["features"]
    assert {g.table for g in project.feature_set().groups} <= set(steps["features"])
    assert {m.scoring.table for m in project.models.values()} <= set(steps["score"])
    generic = {step: tables for step, _, tables in data_flow(None)}
    assert generic == {step: tables for step, _, tables in DATA_FLOW}
    named = {project.kpis.table, project.examples.table}
    assert not named & {t for tables in generic.values() for t in tables}
