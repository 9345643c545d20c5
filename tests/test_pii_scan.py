"""Data test: the PII scanner finds personal data where contracts forbid it, and only there."""

from __future__ import annotations

import json
import re
from datetime import date

import numpy as np
import polars as pl
import pytest

from hortus.checks.pii_scan import PIIViolation, scan_frame, scan_lakehouse, scan_table
from hortus.errors import HortusError
from hortus.lakehouse.catalog import Catalog
from hortus.lakehouse.pii import redact_text, token
from hortus.lakehouse.silver import stored_contract
from hortus.lakehouse.tables import Lakehouse

CONTRACTS = """
version: 1
tables:
  review_digest:
    layer: gold
    owner: test
    description: Reviews copied to gold (text must be redacted).
    columns:
      review_id: {type: string, nullable: false}
      text:      {type: string, pii: free_text}
      rating:    {type: int}
  support_notes:
    layer: gold
    owner: test
    description: Support notes that the contract says hold no personal data.
    columns:
      note_id: {type: string, nullable: false}
      comment: {type: string, pii: none}
"""


@pytest.fixture
def gold_lakehouse(project, tmp_path) -> Lakehouse:
    """Return a Lakehouse whose catalog holds the two gold test contracts above."""
    path = tmp_path / "contracts.yaml"
    path.write_text(CONTRACTS, encoding="utf-8")
    return Lakehouse(paths=project, catalog=Catalog.load(path), stage="test")


def card_number(rng: np.random.Generator, *, valid: bool) -> str:
    """Return a 16-digit Visa-style number grouped by 4, Luhn-valid or not."""
    body = [4, *rng.integers(0, 10, 14).tolist()]
    total = 0
    for i, d in enumerate(body):  # positions 0, 2, .. 14 are doubled for 16 digits
        d = d * 2 if i % 2 == 0 else d
        total += d - 9 if d > 9 else d
    check = (10 - total % 10) % 10
    digits = "".join(map(str, body)) + str(check if valid else (check + 1) % 10)
    return " ".join(digits[i : i + 4] for i in range(0, 16, 4))


def review_frame(seed: int = 3, n: int = 60) -> tuple[pl.DataFrame, dict[str, list[int]]]:
    """Return reviews with e-mails, valid and invalid card numbers planted in known rows."""
    rng = np.random.default_rng(seed)
    rows = rng.permutation(n)
    planted = {
        "email": sorted(rows[:7].tolist()),
        "card": sorted(rows[7:12].tolist()),
        "bad_card": sorted(rows[12:15].tolist()),
    }
    text = np.array([f"The fern number {i} arrived in good shape." for i in range(n)], dtype=object)
    for i in planted["email"]:
        text[i] += f" Questions? Write to user{i}@mail-example.org."
    for i in planted["card"]:
        text[i] += f" I was charged twice on card {card_number(rng, valid=True)}, please refund."
    for i in planted["bad_card"]:
        text[i] += f" Order ref {card_number(rng, valid=False)}."
    df = pl.DataFrame(
        {
            "review_id": [f"r{i:07d}" for i in range(n)],
            "text": text.tolist(),
            "rating": rng.integers(1, 6, n),
        }
    )
    return df, planted


def kinds(result) -> dict[str, int]:
    """Return {kind: rows} of a scan result."""
    return {f.kind: f.rows for f in result.findings}


def test_gold_review_table_with_emails_and_cards_is_flagged(gold_lakehouse):
    """Check that a gold review table's e-mails and valid cards are counted and masked."""
    df, planted = review_frame()
    gold_lakehouse.write("gold.review_digest", df)
    result = scan_table(gold_lakehouse, "gold.review_digest")
    assert kinds(result) == {"EMAIL": len(planted["email"]), "CARD": len(planted["card"])}
    by_kind = {f.kind: f for f in result.findings}
    email, card = by_kind["EMAIL"], by_kind["CARD"]
    assert email.column == card.column == "text"
    assert email.example_row == planted["email"][0]
    assert re.fullmatch(r"u\*{4,}@m\*+\.org", email.example)
    raw_card = re.search(r"4[0-9 ]{18}", df["text"][planted["card"][0]]).group()
    assert card.example_row == planted["card"][0]
    assert card.example == "**** **** **** " + raw_card[-4:]
    # free text in gold must have been redacted: both findings are violations
    assert {(f.pii_class, f.rule, f.violation) for f in result.findings} == {
        ("free_text", "free_text_not_redacted", True)
    }
    assert not result.ok and result.tables == {"gold.review_digest": df.height}
    # nothing unmasked is stored in the JSON summary or the frame
    dumped = json.dumps(result.to_dict()) + str(result.to_frame().rows())
    assert raw_card not in dumped and raw_card.replace(" ", "") not in dumped
    assert f"user{planted['email'][0]}@" not in dumped


def test_invalid_luhn_number_is_not_a_card():
    """Check that a 16-digit number failing the Luhn check is not a card, a valid one is."""
    rng = np.random.default_rng(8)
    bad = [card_number(rng, valid=False) for _ in range(4)]
    good = card_number(rng, valid=True)
    df = pl.DataFrame({"note": [f"ref {b} ok" for b in bad] + [f"card {good}"]})
    result = scan_frame(df, table="gold.notes")
    assert kinds(result) == {"CARD": 1}
    assert result.findings[0].example_row == len(bad)


def test_valid_iban_is_found_and_invalid_is_not():
    """Check that IBANs passing mod-97 are found (with letters too) and broken ones are not."""
    df = pl.DataFrame(
        {
            "note": [
                "refund to DE89 3704 0044 0532 0130 00 please",
                "refund to DE89 3704 0044 0532 0130 01 please",  # check digits broken
                "refund to GB82WEST12345698765432",
                "refund to GB82 WEST 1234 5698 7654 33",  # last digit changed
            ]
        }
    )
    result = scan_frame(df, table="gold.notes")
    assert kinds(result) == {"IBAN": 2}
    assert result.findings[0].example == "DE** **** **** **** **** 00"
    only_invalid = scan_frame(df[[1, 3], :], table="gold.notes")
    assert only_invalid.findings == ()


def test_tokens_and_redaction_placeholders_are_not_flagged():
    """Check that keyed tokens and silver's redaction output never count as PII."""
    raw = [
        "Contact Maria Schmidt at maria.schmidt@example.org or +49 170 12345678.",
        "Refund to DE89 3704 0044 0532 0130 00, card 4111 1111 1111 1111, ip 10.1.2.3.",
        "I was born on 1987-02-03. Thanks, Maria Schmidt",
    ]
    assert kinds(scan_frame(pl.DataFrame({"t": raw}), table="gold.x")).keys() >= {
        "EMAIL",
        "PHONE",
        "IBAN",
        "CARD",
        "IP",
        "DOB",
        "NAME",
    }
    redacted = pl.DataFrame({"t": raw}).select(redact_text(pl.col("t"), ["Maria Schmidt"]))
    assert redacted["t"].str.contains(r"\[(PII|EMAIL|CARD)\]").all()
    tok = token("maria.schmidt", b"k")
    tokens = pl.DataFrame(
        {
            "t": [token(v, b"k") for v in raw]
            + [f"{tok} [PII] [EMAIL] [IBAN]", f"reply to {tok}@example.org"]  # tokenised local part
        }
    )
    assert scan_frame(redacted, table="gold.x").findings == ()
    assert scan_frame(tokens, table="gold.x").findings == ()


def test_names_next_to_an_email_are_flagged_as_name():
    """Check that a capitalised name near an e-mail or after 'my name is' is a NAME."""
    df = pl.DataFrame(
        {
            "t": [
                "Great ferns. Contact Pieter van den Berg at p.berg@example.nl for photos.",
                "Hello, my name is Aoife O'Brien and the pot was cracked.",
                "The Monstera Deliciosa arrived in great shape.",  # capitalised, no PII near
                # the capitalised pair is 5 words away from the e-mail
                "Write to help@example.com if the leaves of my Calathea Orbifolia turn yellow.",
            ]
        }
    )
    result = scan_frame(df, table="gold.x", name_window=3)
    names = [f for f in result.findings if f.kind == "NAME"]
    assert len(names) == 1 and names[0].rows == 2 and names[0].example_row == 0
    assert "Pieter" not in names[0].example and names[0].example.endswith("B***")
    wide = scan_frame(df, table="gold.x", name_window=6)
    assert kinds(wide)["NAME"] == 3


def test_clean_text_passes():
    """Check that review-like text with prices, ids and dates gives no finding."""
    df = pl.DataFrame(
        {
            "text": [
                "Perfect Snake Plant, arrived in great shape on 2025-03-01.",
                "Paid 12.50 EUR for order o000123456789 on 3/4/2025; version 1.2.3 of the app.",
                "The Laurus nobilis (large) is thriving. Would definitely order again.",
                None,
            ],
            "tags": [["fern", "gift"], ["sale"], [], None],
            "source_file": ["reviews/reviews-2025-03-01.jsonl"] * 4,
        }
    )
    result = scan_frame(df, table="gold.x")
    assert result.ok and result.findings == ()
    assert set(result.columns["gold.x"]) == {"text", "tags", "source_file"}


def test_dates_of_birth_are_found_by_column_name_and_context():
    """Check that DOB is a birth-named date column or a date near 'born', not any date."""
    df = pl.DataFrame(
        {
            "birth_date": [date(1987, 2, 3), None, date(1990, 5, 1)],
            "signup_date": [date(2025, 3, 1)] * 3,
            "note": ["born on 12/05/1979 in Cork", "delivered 2025-03-01", "DOB: 1990-05-01"],
        }
    )
    result = scan_frame(df, table="gold.x")
    found = {(f.column, f.kind): f.rows for f in result.findings}
    assert found == {("birth_date", "DOB"): 2, ("note", "DOB"): 2}
    assert {f.example for f in result.findings} == {"****-**-**", "**/**/****"}


def test_none_column_holding_phone_numbers_fails_naming_table_column_and_rule(gold_lakehouse):
    """Check that phones in a `pii: none` column raise PIIViolation naming where and why."""
    phones = ["+44 7700 900123", "+33 6 12 34 56 78", "+49 170 12345678"]
    comments = [f"customer called from {p}, wants a refund" for p in phones] + [
        "no answer",
        "parcel left with neighbour",
    ]
    df = pl.DataFrame({"note_id": [f"n{i}" for i in range(5)], "comment": comments})
    gold_lakehouse.write("gold.support_notes", df)
    result = scan_table(gold_lakehouse, "gold.support_notes")
    assert [(f.column, f.kind, f.rows, f.rule) for f in result.violations] == [
        ("comment", "PHONE", 3, "pii_in_non_pii_column")
    ]
    with pytest.raises(PIIViolation, match=r"gold\.support_notes\.comment: PHONE in 3 of 5") as e:
        result.raise_for_violations()
    message = str(e.value)
    assert "pii_in_non_pii_column" in message and "'+** **** ****23'" in message
    assert not any(p in message or p.replace(" ", "") in message for p in phones)
    assert e.value.violations == tuple(result.violations)


def test_restricted_layer_allows_declared_pii_but_not_in_undeclared_columns(lakehouse):
    """Check that bronze may hold direct PII in declared columns but not in a `none` one."""
    contract = lakehouse.catalog.get("bronze.users")
    df = pl.DataFrame(
        {
            "user_id": ["u000001", "u000002"],
            "email": ["jane@example.com", "joe@example.com"],
            "country": ["GB", "jane@example.com"],  # pii none in the contract
        }
    )
    result = scan_frame(df, table="bronze.users", contract=contract)
    verdicts = {f.column: (f.violation, f.rule) for f in result.findings}
    assert verdicts == {
        "email": (False, "allowed_in_restricted_layer"),
        "country": (True, "pii_in_non_pii_column"),
    }


def test_direct_column_outside_restricted_zone_must_hold_tokens(lakehouse):
    """Check that a silver direct column holding a raw address is UNTOKENISED."""
    contract = stored_contract(lakehouse.catalog.get("silver.users"))
    df = pl.DataFrame(
        {
            "user_id": ["u000001", "u000002", "u000003"],
            "name": [token("Jane Doe", b"k"), token("Joe Bloggs", b"k"), None],
            "address": [token("1 High St", b"k"), "1 High St, London", None],
        }
    )
    result = scan_frame(df, table="silver.users", contract=contract)
    assert [(f.column, f.kind, f.rows, f.rule) for f in result.findings] == [
        ("address", "UNTOKENISED", 1, "direct_pii_not_tokenised")
    ]
    assert "High" not in result.findings[0].example


def test_min_rows_and_sampling_are_explicit_and_seeded():
    """Check that min_rows drops rarer findings and a seeded sample is reproducible."""
    df, planted = review_frame(seed=5, n=200)
    strict = scan_frame(df, table="gold.x", min_rows=len(planted["card"]) + 1)
    assert kinds(strict) == {"EMAIL": len(planted["email"])}
    a = scan_frame(df, table="gold.x", sample_rows=50, seed=1)
    b = scan_frame(df, table="gold.x", sample_rows=50, seed=1)
    assert a == b and a.tables == {"gold.x": 50}
    assert all(f.rows <= len(planted[f.kind.lower()]) for f in a.findings)


def test_unknown_column_is_refused_with_table_and_column():
    """Check that asking to scan a missing column names the table and the column."""
    with pytest.raises(HortusError, match=r"gold\.x: column\(s\) \['nope'\]"):
        scan_frame(pl.DataFrame({"a": ["x"]}), table="gold.x", columns=["nope"])


def test_silver_and_gold_tables_of_simulated_shop_scan_clean(shop):
    """Check that silver and gold of the simulated shop hold no PII that bronze did."""
    result = scan_lakehouse(shop, layers=("silver", "gold"))
    assert result.ok, result.to_frame()
    assert result.findings == ()
    assert {"silver.users", "silver.reviews", "silver.events"} <= set(result.tables)
    assert "text" in result.columns["silver.reviews"]
    assert result.tables["silver.reviews"] > 0
    # the same scanner does find the personal data planted in the raw reviews
    manifest = json.loads((shop.paths.data / "_manifest.json").read_text(encoding="utf-8"))
    planted = manifest["pii_in_reviews"]
    raw = scan_table(shop, "bronze.reviews")
    assert raw.ok  # restricted zone: allowed
    expected = {k.upper(): len(v) for k, v in planted.items() if v}
    assert sum(expected.values()) > 0
    assert kinds(raw) == expected
