"""Generated documentation site: static, offline HTML pages built from the system itself.

`build_site` is what `hortus docs` (the DVC stage `docs`) writes:

- reports/data_dictionary.md, and under reports/docs/:
- architecture.html: the data-flow diagram (inline SVG) with the catalogued tables of each
  step, the pipeline DAG reported by `dvc dag --dot` drawn by a small layered layout
  (inline SVG, no graphviz), the `dvc dag --md` mermaid listing, and every stage of
  dvc.yaml with its cmd, deps, params and outs;
- data_dictionary.html: the data dictionary (the markdown rendered with mistune);
- parameters.html: every key of params.yaml with its value and its meaning, taken from
  the comment lines directly above the key or its trailing comment
  (`parse_param_comments`); keys without either are flagged "undocumented";
- models.html: every registered model's versions with aliases, latest gate run,
  approvals, metrics and the link to the published report (reports/models/<model>/<N>/);
- compare_<model>.html: the champion and the newest other versions of each model with
  two or more versions side by side (`hortus models compare` as a page);
- gate/<model>/v<N>.html: each gate report reports/gate/<model>/v<N>.md rendered;
- catalog.html: every tag with its tables and columns, and every table (tags index);
- lineage.html: the lineage graph (tables, features, model versions, predictions), SVG;
- plots.html: every plot `dvc plots show --json` returns, drawn as inline SVG (DVC's own
  page loads Vega from a CDN and is blank offline); says why when there are none;
- guide/<name>.html: the user guide, docs/*.md of the project rendered, with an index;
- reports/index.html: one page linking every generated report that exists.

Every page is one HTML file with inline CSS and inline SVG: no scripts, stylesheets,
fonts or images are loaded (`hortus.publishing.notebooks.check_offline` is asserted on each).
Nothing depends on the time of generation, so the same system gives the same bytes.

The code lives in private modules by idea (`_html`, `_params_doc`, `_dag`,
`_architecture`, `_models_page`, `_plots_page`, `_index`); this module re-exports every name it had
and holds `build_site`.
"""

from __future__ import annotations

from hortus.config import Paths
from hortus.lakehouse.tables import Lakehouse

# Every name the module had before the split, private helpers included (F401: the
# private ones are re-exported for importers, not listed in __all__).
from hortus.publishing._architecture import (  # noqa: F401
    DATA_FLOW,
    _as_list,
    _items,
    _match,
    architecture_page,
    data_flow,
    dataflow_svg,
    load_stages,
)
from hortus.publishing._dag import (  # noqa: F401
    _DOT_EDGE,
    _DOT_NODE,
    Dag,
    _dvc,
    dag_svg,
    dvc_dag,
    layered_layout,
    parse_dot,
)
from hortus.publishing._guide import GUIDE_DIR, guide_pages, guide_sources  # noqa: F401
from hortus.publishing._html import (  # noqa: F401
    CSS,
    DOCS_DIR,
    PAGES,
    _AnchoredHTML,
    _esc,
    _inline,
    _slug,
    _write,
    markdown_html,
    page_html,
)
from hortus.publishing._index import (  # noqa: F401
    DESCRIPTIONS,
    _link,
    index_page,
)
from hortus.publishing._models_page import (  # noqa: F401
    _gate_cell,
    _metrics_text,
    _Report,
    card_verdict,
    model_versions,
    models_page,
    read_model_report,
)
from hortus.publishing._params_doc import (  # noqa: F401
    _BLOCK_SCALAR,
    _KEY_LINE,
    ParamDoc,
    _balance,
    _lookup,
    _value_text,
    parameters_page,
    parse_param_comments,
    split_comment,
    undocumented,
)
from hortus.publishing._plots_page import (  # noqa: F401
    PLOTS_PAGE,
    DvcPlots,
    dvc_plots,
    plots_page,
)
from hortus.publishing.compare_page import site_compare_pages
from hortus.publishing.docs import data_dictionary


def _readable_versions(lh: Lakehouse) -> dict[str, list[dict]]:
    """Return the registered versions by model, or none when the user may not read them."""
    from hortus.governance.access import AccessDenied

    try:
        return model_versions(lh)
    except AccessDenied:
        return {}  # the models page says so


def build_site(paths: Paths, lh: Lakehouse) -> dict:
    """Write the data dictionary, the docs pages and reports/index.html; return a summary.

    Reads the catalog and the registry through `lh` (as its user), dvc.yaml, params.yaml,
    `dvc dag` and `dvc plots show` (when the project has a dvc.yaml) and the reports
    other stages wrote.
    """
    reports = paths.reports
    docs_dir = reports / DOCS_DIR
    dictionary = data_dictionary(lh)
    reports.mkdir(parents=True, exist_ok=True)
    (reports / "data_dictionary.md").write_text(dictionary, encoding="utf-8")
    written = []
    for md in sorted(reports.glob("gate/*/v*.md")):
        text = md.read_text(encoding="utf-8")
        head, _, rest = text.partition("\n")
        title, text = (
            (head.lstrip("# ").strip(), rest) if head.startswith("# ") else (md.stem, text)
        )
        page = page_html(title, markdown_html(text), home="../../../index.html", nav="../../")
        written.append(_write(docs_dir / "gate" / md.parent.name / f"{md.stem}.html", page))
    stages = load_stages(paths.root)
    dag = dvc_dag(paths.root) if (paths.root / "dvc.yaml").exists() else None
    written.append(
        _write(docs_dir / "architecture.html", architecture_page(paths.root, lh, dag, stages))
    )
    written.append(
        _write(
            docs_dir / "data_dictionary.html",
            page_html("Data dictionary", markdown_html(dictionary.split("\n", 1)[1])),
        )
    )
    params_file = paths.root / "params.yaml"
    params = (
        parse_param_comments(params_file.read_text(encoding="utf-8"), source=str(params_file))
        if params_file.exists()
        else []
    )
    written.append(_write(docs_dir / "parameters.html", parameters_page(params)))
    written.extend(site_compare_pages(lh, docs_dir, _readable_versions(lh)).values())
    written.append(_write(docs_dir / "models.html", models_page(lh, reports, docs_dir)))
    written.append(_write(docs_dir / PLOTS_PAGE, plots_page(paths.root)))
    from hortus.publishing._catalog_pages import (
        CATALOG_PAGE,
        LINEAGE_PAGE,
        catalog_page,
        lineage_page,
    )

    written.append(_write(docs_dir / CATALOG_PAGE, catalog_page(lh)))
    written.append(_write(docs_dir / LINEAGE_PAGE, lineage_page(lh)))
    written.extend(guide_pages(paths.root, reports))
    written.append(_write(reports / "index.html", index_page(reports, stages)))
    return {
        "data_dictionary": "reports/data_dictionary.md",
        "pages": [p.relative_to(paths.root).as_posix() for p in written],
        "dag_edges": len(dag.edges) if dag else 0,
        "undocumented_params": undocumented(params),
    }
