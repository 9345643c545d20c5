"""The model registry: versions with build receipts, and aliases with a replayable history.

Both halves live in the operations plane (`lakehouse/ops/`, which `dvc repro`
never deletes):

- `ops.model_versions` has one row per registered version.  The artifact (and
  its `<stem>.signature.json` sibling) is copied to
  `lakehouse/ops/models/<name>/v<N>/`, a folder that is claimed atomically and
  never overwritten; its SHA-256 is checked after the copy and again before
  every load.
- `ops.model_aliases` is an append-only event log (promote, rollback, register,
  clear).  Each event records the version the alias points to afterwards and
  the one before, so replaying the log gives the current aliases and each
  alias' stack of holders, which is what rollback walks back through.

Rollback semantics
------------------
Replaying an alias' events builds a stack of holders: `promote`/`register`
push the new version (pointing an alias at its current holder is a no-op and
records nothing), `clear` pushes "nothing".  `rollback` pops the current
holder, and with it any entries under it that are "nothing" or the same
version, and points the alias at the version now on top; the event records
that version and the one left.  A second rollback therefore goes one further
back, and a version rolled back away from is gone from the stack, so a later
rollback never returns to it (promote 1, 2, 3; rollback -> 2; promote 4;
rollback -> 2; rollback -> 1; rollback -> error).  Rolling back a cleared
alias restores its last holder.  With no earlier version, rollback is an error.

Promotion gate
--------------
`ops.gate_results` holds every gate run (`hortus gate VERSION`, see
`hortus.checks.gate`).  Pointing the `champion` alias at a version (promote) needs
that version's latest gate run to have passed; otherwise `GateRequired` lists
every failed check with its value and threshold, and nothing is recorded.
Rolling back to an earlier champion needs no new gate: it passed one to
become champion.

Four eyes and grants
--------------------
The registry acts as its Lakehouse's user (`Lakehouse.user`): that user is the
author of the versions it registers and the actor of the alias events it
records.  Each guarded action is checked against the access policy and audited
in ops.audit_log through `Lakehouse.authorize` (allowed or denied; the object
is the model name):

- `register` needs the `register` grant.  An alias set at registration
  (`register(..., alias="challenger")`, as the pipeline does) is part of the
  registration and needs nothing more, except `champion`, which is never set
  at registration: it needs the checks of `promote`.
- `approve` needs the `approve` grant and an approver who is not the version's
  author (`hortus.governance.access.check_four_eyes`), else AccessDenied naming approver,
  author and version.  The approval is appended to `ops.model_approvals`; a
  second approval of the same version by the same person records nothing.
- `promote` needs the `promote` grant (else AccessDenied).  Pointing `champion`
  at a version also needs its latest gate run passed (else `GateRequired`) and
  an approval by an approver who is not its author and who still holds the
  `approve` grant under the current policy (else `ApprovalRequired`).  The
  promote event records the approvers (`approved_by`) and the gate run
  (`gate_run_id`) it relied on.  Other aliases (challenger, ...) need the
  grant only: they route no production traffic by convention.
- `rollback` and `clear` need the `promote` grant and no new approval or gate:
  a rollback returns to a version that passed both to become champion.
- `promote_allowed` answers whether `promote` would succeed, and what is
  missing, without recording anything but the reads it makes.

A refused attempt writes nothing to the registry tables and is audited as a
denied `promote` or `approve` whose detail says what was missing.
"""

from __future__ import annotations

from hortus.errors import ArtifactError, HortusError  # noqa: F401
from hortus.governance.access import AccessDenied, Decision, check_four_eyes  # noqa: F401
from hortus.lakehouse.contracts import check_frame  # noqa: F401
from hortus.lakehouse.tables import Lakehouse  # noqa: F401
from hortus.models._aliases import _AliasesMixin  # noqa: F401
from hortus.models._approvals import (  # noqa: F401
    _APPROVAL_FIELDS,
    Approval,
    ApprovalRequired,
    _ApprovalsMixin,
)
from hortus.models._promotion import GateRequired, _PromotionMixin, _Readiness  # noqa: F401
from hortus.models._receipt import Receipt, _data_md5  # noqa: F401
from hortus.models._registry import Registry  # noqa: F401
from hortus.models._registry_base import (  # noqa: F401
    _ALIAS,
    _NAME,
    _VERSION_REF,
    ALIASES,
    APPROVALS,
    CHALLENGER,
    CHAMPION,
    GATES,
    VERSIONS,
    ModelVersion,
    _dumps,
    default_model,
    model_flag,
    model_names,
    sha256_file,
)
from hortus.provenance import git_state  # noqa: F401

__all__ = [
    "ALIASES",
    "APPROVALS",
    "Approval",
    "ApprovalRequired",
    "CHALLENGER",
    "CHAMPION",
    "GATES",
    "GateRequired",
    "ModelVersion",
    "Receipt",
    "Registry",
    "VERSIONS",
    "default_model",
    "model_flag",
    "model_names",
    "sha256_file",
]
