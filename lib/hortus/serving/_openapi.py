"""The service's OpenAPI 3.1 schema (built by hand) and an offline docs page.

The schema lists the routes, the bearer security scheme, the request bodies and the
error answers; each served model's input columns (from its signature) are given as the
row schema of its predict route.  `/docs` is one self-contained HTML page (inline CSS
and script, no CDN, nothing fetched but /openapi.json of the same service).
"""

from __future__ import annotations

_TYPES = {"string": "string", "int": "integer", "float": "number", "bool": "boolean",
          "date": "string", "datetime": "string"}  # fmt: skip


def _error(description: str) -> dict:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_ERRORS = {
    "400": _error("Malformed JSON body."),
    "401": _error("Missing, unknown or expired bearer token."),
    "403": _error("The token's user has no `predict` grant on the model."),
    "404": _error("Unknown model (or, for /recommend, unknown entity)."),
    "413": _error("Body (or number of rows) over the limit."),
    "422": _error("The input does not match the model: every problem is listed."),
    "503": _error("The model or the online store is not loaded (e.g. artifact hash mismatch)."),
}


def _row_schema(model) -> dict:
    props = {}
    for c in model.signature.columns:
        p: dict = {"type": _TYPES.get(c["type"], "string")}
        if c["type"] in ("date", "datetime"):
            p["format"] = "date" if c["type"] == "date" else "date-time"
        if c.get("categories"):
            p["enum"] = list(c["categories"])
        if c["nullable"]:
            p["type"] = [p["type"], "null"]
        props[c["name"]] = p
    return {"type": "object", "properties": props, "required": list(props)}


def openapi(service) -> dict:
    """Return the OpenAPI document of a running service."""
    paths: dict = {}
    for name in service.model_names:
        model = service.models.get(name)
        row = _row_schema(model) if model is not None else {"type": "object"}
        version = f" (serving v{model.version})" if model is not None else ""
        paths[f"/v1/models/{name}/predict"] = {"post": {
            "summary": f"Score rows with model {name}{version}",
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["rows"],
                "properties": {"rows": {"type": "array", "items": row, "minItems": 1}}}}}},
            "responses": {"200": {"description": "One output per row.", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Predictions"}}}}}
            | _ERRORS,
        }}  # fmt: skip
        if service.project.model(name).task == "ranking":
            paths[f"/v1/models/{name}/recommend"] = {"post": {
                "summary": f"Top-k candidates for an entity, ranked by model {name}{version}",
                "security": [{"bearer": []}],
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["entity"],
                    "properties": {"entity": {"type": "object",
                                              "additionalProperties": {"type": "string"}},
                                   "k": {"type": "integer", "minimum": 1,
                                         "maximum": service.config.max_k, "default": 10}}}}}},
                "responses": {"200": {"description": "The top-k items.", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Ranking"}}}}}
                | _ERRORS,
            }}  # fmt: skip
    for route, what in (("/healthz", "The process answers."),
                        ("/readyz", "200 when every model and the online store are loaded."),
                        ("/metrics", "Prometheus text exposition."),
                        ("/openapi.json", "This document."),
                        ("/docs", "Human-readable page of this document (offline).")):  # fmt: skip
        paths[route] = {"get": {"summary": what, "responses": {"200": {"description": what}}}}
    meta = {"model": {"type": "string"}, "version": {"type": ["integer", "null"]},
            "request_id": {"type": "string"}}  # fmt: skip
    return {
        "openapi": "3.1.0",
        "info": {"title": f"Hortus serve: {service.project.name}", "version": "1",
                 "description": "Online scoring of the project's registered models."},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {"type": "object", "properties": meta | {
                    "error": {"type": "string"}, "problems": {"type": "array"}}},
                "Predictions": {"type": "object", "properties": meta | {
                    "predictions": {"type": "array", "items": {"type": "object"}}}},
                "Ranking": {"type": "object", "properties": meta | {
                    "entity": {"type": "object"}, "k": {"type": "integer"},
                    "as_of": {"type": "string", "format": "date-time"},
                    "items": {"type": "array", "items": {"type": "object"}}}},
            },
        },
    }  # fmt: skip


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Hortus serve: API</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.4rem} .op{border:1px solid #ccc;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.m{font-weight:bold;text-transform:uppercase;margin-right:.5rem}
pre{background:#f5f5f5;padding:.6rem;overflow:auto;font-size:.85rem}
</style></head><body>
<h1>Hortus serve</h1>
<p>Endpoints of this service, read from <a href="openapi.json">openapi.json</a>. Calls to a
model need <code>Authorization: Bearer &lt;token&gt;</code> (<code>hortus serve token --user
USER</code> issues one).</p>
<div id="ops">loading openapi.json ...</div>
<script>
fetch("openapi.json").then(r => r.json()).then(doc => {
  const box = document.getElementById("ops"); box.textContent = "";
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) {
      const div = document.createElement("div"); div.className = "op";
      const h = document.createElement("div");
      const m = document.createElement("span"); m.className = "m"; m.textContent = method;
      const p = document.createElement("code"); p.textContent = path;
      h.append(m, p); div.append(h);
      const s = document.createElement("p"); s.textContent = op.summary || ""; div.append(s);
      if (op.requestBody) {
        const pre = document.createElement("pre");
        const body = op.requestBody.content["application/json"].schema;
        pre.textContent = JSON.stringify(body, null, 2);
        div.append(pre);
      }
      const codes = document.createElement("p");
      codes.textContent = "answers: " + Object.keys(op.responses || {}).join(", ");
      div.append(codes); box.append(div);
    }
  }
});
</script></body></html>
"""


def docs_page() -> str:
    """Return the self-contained docs page (no external script, style or font)."""
    return _PAGE
