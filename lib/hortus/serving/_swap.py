"""Hot swap: follow the alias in the registry and switch versions without a failed request.

The source of truth is the registry itself, no second mechanism: ``ops.model_aliases``
(the append-only alias log that `Registry.promote` and `Registry.rollback` write) and
the ``model_promoted`` / ``model_rolled_back`` events they emit to ``ops.events``.  A
daemon thread looks at the Delta logs of those two tables (one `stat` of each
``_delta_log`` folder, which a commit changes) every `poll` seconds; when either moved
it resolves the alias of every served model again, and for a model whose alias now
names another version it

1. loads that version completely in the background (`load_served`: the artifact's
   SHA-256 is checked against the registry before anything is deserialised, then the
   signature and spec), and scores one row to warm it up;
2. swaps it in with a single reference assignment (`Service.models[name] = new`).

A request reads the reference once and uses that object to the end, so every request is
answered by one complete version, old or new, never a half-loaded one.  A version that
fails to load (altered artifact, missing file) is not swapped in: the old version keeps
serving and the error is shown by /readyz and counted by /metrics.

The same thread notices a new materialisation of the online store (the SQLite file is
replaced atomically) and swaps in a new `ServingFeatures`, and reloads the access
policy and the token file when they change.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from datetime import UTC, datetime

import polars as pl

from hortus.models.registry import ALIASES

EVENTS = "ops.events"
SWAP_EVENTS = ("model_promoted", "model_rolled_back")


class Watcher:
    """Poll the registry's alias log and events; swap models and the store when they move."""

    def __init__(self, service, *, poll: float = 1.0):
        self.service = service
        self.poll = poll
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen: tuple[int, int] | None = None
        self._events_seen = datetime.now(UTC)
        self.checks = 0
        self.events: list[dict] = []  # model_promoted / rolled_back events seen (recent)

    def _stamp(self) -> tuple[int, int]:
        """Return the modification times of the two tables' Delta logs (one stat each).

        A commit adds a file to ``_delta_log``, which changes the folder's mtime: far
        cheaper than opening the tables every poll.
        """
        lh = self.service.watch_lh
        out = []
        for table in (ALIASES, EVENTS):
            try:
                out.append(os.stat(lh.path(table) / "_delta_log").st_mtime_ns)
            except OSError:
                out.append(-1)
        return out[0], out[1]

    def _new_events(self) -> list[dict]:
        lh = self.service.watch_lh
        if not lh.exists(EVENTS):
            return []
        since = self._events_seen
        rows = (
            lh.scan(EVENTS)
            .filter(pl.col("type").is_in(SWAP_EVENTS) & (pl.col("at") > since))
            .sort("at")
            .collect()
        )
        if rows.height:
            self._events_seen = rows["at"].max()
        return rows.to_dicts()

    def check(self) -> list[str]:
        """Run one check now (also used by tests); return the models swapped."""
        self.checks += 1
        svc = self.service
        swapped: list[str] = []
        stamp = self._stamp()
        if stamp != self._seen:
            self._seen = stamp
            try:
                for ev in self._new_events():
                    detail = json.loads(ev.get("detail") or "{}")
                    self.events = ([*self.events, {"type": ev["type"], "subject": ev["subject"],
                                    "version": detail.get("version")}])[-20:]  # fmt: skip
            except Exception as exc:  # events are informative; the alias table decides
                svc.errors["_events"] = f"{type(exc).__name__}: {exc}"
            for name in svc.model_names:
                if svc.reload(name):
                    swapped.append(name)
        svc.refresh_features()
        svc.refresh_identity()
        return swapped

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.check()
            except Exception as exc:  # the watcher never dies of one bad poll
                print(f"hortus serve: warning: alias watch failed: {exc}", file=sys.stderr)

    def start(self) -> Watcher:
        self._seen = self._stamp()
        self._thread = threading.Thread(target=self._run, name="hortus-serve-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
