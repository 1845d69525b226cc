"""The Stripe-Signature scheme, verified without a server: what is accepted,
what is refused, and that the refusal says why."""

from __future__ import annotations

import pytest

from licensing_service.contract.stripe import (
    SIGNATURE_SCHEME,
    TOLERANCE_SECONDS,
    ParsedSignature,
    SignatureError,
    compute_signature,
    parse_signature_header,
    signature_header,
    verify_signature,
)

SECRET = "whsec_unit_current"
OLD = "whsec_unit_old"
NEW = "whsec_unit_new"
NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
BODY = b'{"id": "evt_unit", "object": "event", "type": "invoice.paid", "created": 1767225600}'


def sign(body: bytes = BODY, secrets: str | list[str] = SECRET, t: int = NOW) -> str:
    return signature_header(body, secrets, t)


def refused(header: str | None, secrets: list[str], *, body: bytes = BODY) -> str:
    with pytest.raises(SignatureError) as info:
        verify_signature(body, header, secrets, NOW)
    return str(info.value)


# ------------------------------------------------------------------ valid


def test_a_fresh_signature_verifies_and_returns_its_timestamp() -> None:
    assert verify_signature(BODY, sign(), [SECRET], NOW) == NOW


def test_the_header_has_stripes_shape() -> None:
    header = sign()
    assert header == f"t={NOW},v1={compute_signature(BODY, SECRET, NOW)}"
    assert parse_signature_header(header) == ParsedSignature(
        NOW, (compute_signature(BODY, SECRET, NOW),)
    )
    # HMAC-SHA256 in lowercase hex.
    digest = header.split("v1=", 1)[1]
    assert len(digest) == 64
    assert set(digest) <= set("0123456789abcdef")


def test_spaces_after_commas_are_tolerated() -> None:
    header = sign().replace(",", ", ")
    assert verify_signature(BODY, header, [SECRET], NOW) == NOW


def test_the_wrong_secret_is_refused() -> None:
    message = refused(sign(secrets="whsec_someone_else"), [SECRET])
    assert "match" in message


def test_a_signature_of_another_timestamp_is_refused() -> None:
    # The timestamp is part of what is signed: moving t invalidates v1.
    sig = compute_signature(BODY, SECRET, NOW - 1)
    assert "match" in refused(f"t={NOW},v1={sig}", [SECRET])


def test_no_configured_secret_refuses_everything() -> None:
    assert "secret" in refused(sign(), [])


# -------------------------------------------------------------- tolerance


def test_the_default_tolerance_is_stripes_five_minutes() -> None:
    assert TOLERANCE_SECONDS == 300


@pytest.mark.parametrize("age", [0, 1, 299, 300])
def test_up_to_300_s_old_is_accepted(age: int) -> None:
    t = NOW - age
    assert verify_signature(BODY, sign(t=t), [SECRET], NOW) == t


@pytest.mark.parametrize("age", [301, 302, 3600, NOW])
def test_more_than_300_s_old_is_refused(age: int) -> None:
    message = refused(sign(t=NOW - age), [SECRET])
    assert "old" in message
    assert "300" in message


@pytest.mark.parametrize("ahead", [1, 299, 300])
def test_up_to_300_s_in_the_future_is_accepted(ahead: int) -> None:
    t = NOW + ahead
    assert verify_signature(BODY, sign(t=t), [SECRET], NOW) == t


@pytest.mark.parametrize("ahead", [301, 302, 86_400])
def test_more_than_300_s_in_the_future_is_refused(ahead: int) -> None:
    message = refused(sign(t=NOW + ahead), [SECRET])
    assert "future" in message
    assert "300" in message


def test_a_custom_tolerance_moves_both_edges() -> None:
    assert verify_signature(BODY, sign(t=NOW - 10), [SECRET], NOW, tolerance=10) == NOW - 10
    assert verify_signature(BODY, sign(t=NOW + 10), [SECRET], NOW, tolerance=10) == NOW + 10
    with pytest.raises(SignatureError, match="old"):
        verify_signature(BODY, sign(t=NOW - 11), [SECRET], NOW, tolerance=10)
    with pytest.raises(SignatureError, match="future"):
        verify_signature(BODY, sign(t=NOW + 11), [SECRET], NOW, tolerance=10)


# --------------------------------------------------------------- rotation


def test_a_header_with_two_signatures_carries_one_v1_per_secret() -> None:
    parsed = parse_signature_header(sign(secrets=[OLD, NEW]))
    assert parsed.timestamp == NOW
    assert parsed.signatures == (
        compute_signature(BODY, OLD, NOW),
        compute_signature(BODY, NEW, NOW),
    )


@pytest.mark.parametrize("configured", [OLD, NEW])
def test_stripe_rotating_its_secret_verifies_against_either_one(configured: str) -> None:
    # Stripe signs with both secrets while a rotation is under way.
    assert verify_signature(BODY, sign(secrets=[OLD, NEW]), [configured], NOW) == NOW


@pytest.mark.parametrize("signer", [OLD, NEW])
def test_our_two_configured_secrets_verify_a_header_from_either(signer: str) -> None:
    assert verify_signature(BODY, sign(secrets=signer), [OLD, NEW], NOW) == NOW


def test_rotation_does_not_let_a_third_secret_in() -> None:
    assert "match" in refused(sign(secrets="whsec_third"), [OLD, NEW])
    assert "match" in refused(sign(secrets=["whsec_third", "whsec_fourth"]), [OLD, NEW])


def test_a_bad_signature_next_to_a_good_one_still_verifies() -> None:
    header = f"t={NOW},v1={'0' * 64},v1={compute_signature(BODY, SECRET, NOW)}"
    assert verify_signature(BODY, header, [SECRET], NOW) == NOW


# -------------------------------------------------------------- malformed

GOOD_V1 = compute_signature(BODY, SECRET, NOW)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        pytest.param(None, "missing", id="missing"),
        pytest.param("", "missing", id="empty"),
        pytest.param(f"v1={GOOD_V1}", "no timestamp", id="no-t"),
        pytest.param(f"t=abc,v1={GOOD_V1}", "unix time", id="non-numeric-t"),
        pytest.param(f"t=-{NOW},v1={GOOD_V1}", "unix time", id="negative-t"),
        pytest.param(f"t={NOW}.5,v1={GOOD_V1}", "unix time", id="fractional-t"),
        pytest.param(f"t=,v1={GOOD_V1}", "unix time", id="empty-t"),
        pytest.param(f"t=1{'0' * 12},v1={GOOD_V1}", "unix time", id="huge-t"),
        pytest.param(f"t={NOW}", "no v1", id="no-v1"),
        pytest.param("garbage", "malformed", id="garbage"),
        pytest.param(f"t={NOW},garbage", "malformed", id="garbage-item"),
        pytest.param(f"t={NOW},v0={GOOD_V1}", "no v1", id="only-v0"),
        pytest.param(f"t={NOW},V1={GOOD_V1}", "no v1", id="uppercase-scheme"),
    ],
)
def test_malformed_headers_are_refused_with_a_reason(header: str | None, reason: str) -> None:
    with pytest.raises(SignatureError) as parsed:
        parse_signature_header(header)
    assert reason in str(parsed.value)
    # verify_signature refuses for the same reason, before looking at any secret.
    assert reason in refused(header, [SECRET])


def test_only_v1_counts_even_when_v0_carries_the_right_hmac() -> None:
    header = f"t={NOW},v0={GOOD_V1}"
    assert SIGNATURE_SCHEME == "v1"
    assert "no v1" in refused(header, [SECRET])


def test_an_empty_v1_matches_nothing() -> None:
    assert "match" in refused(f"t={NOW},v1=", [SECRET])


# ----------------------------------------------------------------- body


@pytest.mark.parametrize("position", [0, 1, len(BODY) // 2, len(BODY) - 2, len(BODY) - 1])
def test_every_single_byte_change_is_refused(position: int) -> None:
    header = sign()
    original = BODY[position]
    for value in range(256):
        if value == original:
            continue
        altered = BODY[:position] + bytes([value]) + BODY[position + 1 :]
        with pytest.raises(SignatureError, match="match"):
            verify_signature(altered, header, [SECRET], NOW)
    # The unaltered body still verifies: the refusals above were for the change.
    assert verify_signature(BODY, header, [SECRET], NOW) == NOW


@pytest.mark.parametrize(
    "altered",
    [
        BODY + b" ",
        BODY + b"\n",
        BODY[:-1],
        b" " + BODY,
        b"",
        BODY.replace(b": ", b":"),  # the same JSON, other bytes
    ],
    ids=[
        "trailing-space",
        "trailing-newline",
        "truncated",
        "leading-space",
        "empty",
        "reformatted",
    ],
)
def test_the_raw_bytes_are_signed_not_the_json(altered: bytes) -> None:
    assert altered != BODY
    assert "match" in refused(sign(), [SECRET], body=altered)
