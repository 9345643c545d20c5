"""The audit chain's record format and checks, shared by `hortus.governance.audit`.

Canonical JSON of a record, its hash (SHA-256 for signed records, HMAC-SHA256 under the
audit secret for legacy ``hmac-v0`` records), the bytes a key signs, the digest that
seals legacy records at the migration, and the per-record checks of `AuditLog.verify`:
legacy records, signed records walked in chain order with their key versions
(rotations), and the reason of a structural break.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from hortus.governance._audit_keys import (
    RECORD_DOMAIN,
    key_id_of,
    public_from_hex,
    rotation_statement,
    signs,
)

#: the fields of a legacy (HMAC) record's hash; signed records also hash key_id
HASHED_FIELDS = (
    "seq", "ts", "user", "action", "object", "outcome", "detail", "policy_version", "prev_hash",
)  # fmt: skip
ROTATION_ACTION = "key_rotation"
MIGRATION_ACTION = "audit_migration"
_KEY_ENV = "HORTUS_AUDIT_KEY"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(row: Mapping[str, Any]) -> bytes:
    """Return the canonical JSON bytes of a record's hashed fields.

    `ts` may be a time-zone-aware datetime or integer microseconds since the epoch;
    it is hashed as the integer.  A signed record (key_id set) also hashes its key_id
    and, when set, os_user; a legacy record (no key_id) hashes the fields of the HMAC
    chain only.
    """
    payload = {k: row[k] for k in HASHED_FIELDS}
    if row.get("key_id"):
        payload["key_id"] = row["key_id"]
        if row.get("os_user"):  # records since the writer names the sender's OS user
            payload["os_user"] = row["os_user"]
    if isinstance(payload["ts"], datetime):
        payload["ts"] = (payload["ts"] - _EPOCH) // _US
    return _JSON.encode(payload).encode("utf-8")


def record_hash(row: dict, key: bytes) -> str:
    """Return HMAC-SHA256(key, canonical JSON of the record incl. prev_hash), hex.

    The hash of a legacy (hmac-v0) record; signed records use `content_hash`.
    """
    return hmac.new(key, canonical(row), hashlib.sha256).hexdigest()


def content_hash(row: Mapping[str, Any]) -> str:
    """Return SHA-256 of the canonical JSON of a signed record (incl. prev_hash, key_id), hex."""
    return hashlib.sha256(canonical(row)).hexdigest()


def signed_message(digest: str) -> bytes:
    """Return the bytes an audit key signs for a record whose hash is `digest`."""
    return RECORD_DOMAIN + bytes.fromhex(digest)


def legacy_digest(rows: list[dict]) -> str:
    """Return SHA-256 over the canonical JSON and hash of legacy records, in seq order."""
    h = hashlib.sha256()
    for row in rows:  # audit records, read once at migration and at verification
        h.update(canonical(row) + b"\n" + str(row["hash"]).encode() + b"\n")
    return h.hexdigest()


def legacy_check(rows: list[dict], key: bytes | None) -> tuple[int | None, str]:
    """Check legacy HMAC records with the audit secret: (first bad seq or None, summary)."""
    if not key:
        return None, "not checked (no audit secret)"
    for row in rows:
        if record_hash(row, key) != row["hash"]:
            return int(row["seq"]), f"broken at seq {row['seq']}"
    return None, "ok"


def check_legacy(
    legacy: list[dict], first_signed: dict | None, key: bytes | None
) -> tuple[int, int, str] | None:
    """Check the legacy HMAC records: (records checked, seq, reason) of a failure, or None."""
    if not legacy:
        return None
    bad, _ = legacy_check(legacy, key)
    if bad is not None:
        row = legacy[bad - 1]
        return bad - 1, bad, hash_reason(row)
    if first_signed is not None and first_signed["action"] == MIGRATION_ACTION:
        sealed = json.loads(first_signed["detail"])
        if (sealed.get("legacy_records"), sealed.get("legacy_digest")) != (
            len(legacy),
            legacy_digest(legacy),
        ):
            return (
                0,
                1,
                (
                    f"legacy records 1..{len(legacy)} differ from the digest signed at the "
                    f"migration (seq {first_signed['seq']}): a legacy record was edited"
                ),
            )
    elif not key:
        return (
            0,
            1,
            (
                f"{len(legacy)} legacy HMAC record(s) (hmac-v0) and no signed migration "
                "record: "
                f"they can only be checked with the old audit secret ({_KEY_ENV})"
            ),
        )
    return None


def check_signed(
    rows: list[dict], trusted: dict[str, Any], offset: int, keys_dir: Path, *, whole: bool = True
) -> tuple[tuple[int, int, str] | None, dict[str, Any]]:
    """Walk the signed records and key versions in chain order.

    Every record's hash is recomputed (an edited record fails at its own seq).  A
    record that carries a signature (the head of its commit; before per-commit signing,
    every record) is checked against the key active at its position: since each hash
    binds the one before, a good signed head vouches for every record up to it.  A
    head whose signature fails reports the range from the record after the last good
    head; records after the last signed head are reported as unsigned (unless not
    `whole`: the rows stop at a structural break, which is reported instead).  Returns
    ((records verified, seq, reason) of the first failure, or None; the keys by id).
    """
    keys = dict(trusted)
    active = rows[0]["key_id"] if rows else None
    if active is not None and active not in trusted:
        row = rows[0]
        why = (
            f"seq {row['seq']} is signed by key_id {active}, which is not a published "
            f"audit key ({keys_dir}): a record signed by an unknown key"
        )
        return (offset, int(row["seq"]), why), keys
    good, good_seq = offset, int(rows[0]["seq"]) - 1 if rows else 0  # last good signed head
    for i, row in enumerate(rows):  # one hash per record, one signature check per commit
        seq = int(row["seq"])
        if row["key_id"] != active:
            why = (
                f"seq {seq} is signed by key_id {row['key_id']}, but the active audit key "
                f"at seq {seq} is {active}: a record signed by an unknown or retired key"
            )
            return (good, seq, why), keys
        if content_hash(row) != row["hash"]:
            return (good, seq, hash_reason(row)), keys
        if not row["sig"]:
            if row["action"] == ROTATION_ACTION:
                return (good, seq, f"key rotation record seq {seq} carries no signature"), keys
            continue  # covered by the signed head of its commit, checked below
        if not signs(keys[active], row["sig"], signed_message(row["hash"])):
            span = f"seq {good_seq + 1}..{seq}" if good_seq + 1 < seq else f"seq {seq}"
            why = (
                f"signature of the chain head at seq {seq} does not verify under audit key "
                f"{active}: {span} (after the last good signed head, seq {good_seq}) were "
                "rewritten without the audit writer's private key (chain recomputed with a "
                "plain unkeyed SHA-256, or re-signed with another key)"
            )
            return (good, good_seq + 1, why), keys
        good, good_seq = offset + i + 1, seq
        if row["action"] == ROTATION_ACTION:
            try:
                info = json.loads(row["detail"])
                new_pub = public_from_hex(info["public_key"])
                ok = (
                    info["from"] == active
                    and key_id_of(new_pub) == info["to"]
                    and signs(
                        new_pub,
                        info["new_key_sig"],
                        rotation_statement(active, info["to"], info["public_key"]),
                    )
                )
            except (ValueError, KeyError, TypeError):
                ok = False
            if not ok:
                why = f"key rotation record seq {seq} is malformed or not signed by the new key"
                return (good - 1, seq, why), keys
            active = info["to"]
            keys[active] = new_pub
    if whole and rows and good < offset + len(rows):
        last = int(rows[-1]["seq"])
        span = f"seq {good_seq + 1}..{last}" if good_seq + 1 < last else f"seq {last}"
        why = (
            f"{span} carry no signed chain head (the last signed head is seq {good_seq}): "
            "records appended without the audit key, or a commit's signed head was cut"
        )
        return (good, good_seq + 1, why), keys
    return None, keys


def hash_reason(row: dict) -> str:
    seq = row["seq"]
    plain = hashlib.sha256(canonical(row)).hexdigest()
    if row.get("key_id"):
        return (
            f"hash of seq {seq} does not match its contents: record edited, or the chain "
            "recomputed with another key"
        )
    if row["hash"] == plain:
        how = "recomputed with a plain unkeyed SHA-256 (chain rewritten without the key)"
    else:
        how = "record edited, or the chain recomputed with another key"
    return f"hash of legacy seq {seq} does not match its contents under the audit key: {how}"


def structural_reason(df: pl.DataFrame, checks: pl.DataFrame, limit: int) -> str:
    """Return the reason of the first structural break (row `limit`)."""
    row = checks.row(limit, named=True)
    seq = int(row["seq"])
    if not row["order_ok"]:
        return (
            f"seq {seq} carries no signature (key_id) after signed records: a record written "
            "without the audit key"
        )
    if not row["seq_ok"]:
        before = int(df["seq"][limit - 1]) if limit else 0
        if seq == before:
            return f"seq {seq} appears twice (record duplicated, or two writers forked the log)"
        if limit == 0:
            return f"the first record has seq {seq}, expected 1 (records deleted at the start)"
        gap = f"{before + 1}" if seq - before == 2 else f"{before + 1}..{seq - 1}"
        return f"seq {gap} missing between {before} and {seq} (record deleted)"
    return (
        f"prev_hash of seq {seq} is not the hash of seq {seq - 1} "
        "(records reordered, inserted or deleted)"
    )
