"""Signed receipts: proof of a check, verified with an independent JOSE implementation (PyJWT)
against the served JWKS; their record, listed per API client and pruned; /verify/receipt."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import segno
from click.testing import CliRunner
from sqlalchemy import select, update

from gateway.cli.main import cli
from gateway.platform import clock, signing
from gateway.store.models import Receipt
from tests.support.clients import register_client
from tests.support.events import revoked
from tests.support.jws import high_s_twin
from tests.support.plans import plan_of, statements_on
from tests.support.verification import ANSWER_KEYS, days_ago, record, record_every_status

BASE = "https://verify.example.org"


@pytest.fixture
def app(database_url, make_app):
    app = make_app(
        database_url=database_url,
        jobs_synchronous=True,
        public_base_url=BASE,
        issuer_name="Registry of Allied Health",
    )
    record_every_status(app)
    return app


@pytest.fixture
def employer(app):
    """(client id, headers) of an API client with `verifications:read`."""
    return employer_of(app, "Acme HR")


def decode(client, token: str) -> dict:
    """The claims of `token`, checked by PyJWT with the key the served JWKS names."""
    jwks = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").get_json())
    kid = jwt.get_unverified_header(token)["kid"]
    return jwt.decode(token, jwks[kid].key, algorithms=["ES256"], issuer=BASE)


def test_a_receipt_is_a_jws_of_the_answer_that_pyjwt_verifies_with_the_served_keys(client):
    response = client.get("/v1/verifications/ACTIVE-1/receipt")
    assert response.status_code == 200
    assert response.mimetype == "application/jose"
    assert "no-store" in response.headers["Cache-Control"]
    token = response.get_data(as_text=True)
    header = jwt.get_unverified_header(token)
    assert (header["alg"], header["typ"]) == ("ES256", "JWT")
    claims = decode(client, token)
    assert set(claims) == ANSWER_KEYS | {"iss", "sub", "iat", "jti"}
    assert claims["sub"] == claims["certification_id"] == "ACTIVE-1"
    assert claims["status"] == "active" and claims["name"] == "Ada Lovelace"
    assert claims["issuer"]["name"] == "Registry of Allied Health"
    assert claims["jti"] == response.headers["Receipt-Reference"]
    assert abs(claims["iat"] - clock.now().timestamp()) < 60
    lookup = client.get("/v1/verifications/ACTIVE-1").get_json()
    assert {k: claims[k] for k in lookup if k != "verified_at"} == {
        k: v for k, v in lookup.items() if k != "verified_at"
    }


def test_every_receipt_has_its_own_reference_and_carries_nothing_private(client):
    tokens = [client.get("/v1/verifications/INACTIVE-1/receipt").get_data(True) for _ in range(3)]
    claims = [decode(client, token) for token in tokens]
    assert len({c["jti"] for c in claims}) == 3
    text = json.dumps(claims)
    for private in ("ada@example.org", "M-INACTIVE-1", "points", "reasons", "FEE-", "fees"):
        assert private not in text


def test_a_receipt_for_a_past_day_needs_a_token_and_says_the_day(client, employer):
    assert client.get("/v1/verifications/REVOKED-1/receipt?on=" + days_ago(30)).status_code == 401
    _, headers = employer
    token = client.get(f"/v1/verifications/REVOKED-1/receipt?on={days_ago(30)}", headers=headers)
    claims = decode(client, token.get_data(as_text=True))
    assert (claims["status"], claims["on"]) == ("active", days_ago(30))
    before = client.get(f"/v1/verifications/REVOKED-1/receipt?on={days_ago(90)}", headers=headers)
    assert before.status_code == 404 and before.get_json()["errors"][0]["field"] == "on"


def test_a_receipt_link_carrying_parameters_of_its_own_still_gets_its_receipt(client, employer):
    tracked = client.get("/v1/verifications/ACTIVE-1/receipt?utm_source=mail&x=1")
    assert tracked.status_code == 200 and decode(client, tracked.get_data(as_text=True))
    _, headers = employer
    day = client.get(
        f"/v1/verifications/REVOKED-1/receipt?on={days_ago(30)}&utm_source=mail", headers=headers
    )
    assert decode(client, day.get_data(as_text=True))["on"] == days_ago(30)
    bad = client.get("/v1/verifications/ACTIVE-1/receipt?on=soon&utm_source=mail", headers=headers)
    assert bad.status_code == 422 and [e["field"] for e in bad.get_json()["errors"]] == ["on"]


def test_an_unknown_number_gets_no_receipt_and_none_is_recorded(app, client):
    assert client.get("/v1/verifications/NOPE-1/receipt").status_code == 404
    with app.extensions["gateway"].db.sessions() as session:
        assert session.scalars(select(Receipt)).all() == []


def test_every_receipt_is_recorded_and_a_client_lists_only_its_own(app, client, employer):
    _, headers = employer
    _, other = employer_of(app, "Other HR")
    client.get("/v1/verifications/ACTIVE-1/receipt")  # anonymous: recorded by address
    mine = [
        client.get(f"/v1/verifications/{n}/receipt", headers=headers).headers["Receipt-Reference"]
        for n in ("LAPSED-1", "ACTIVE-1")
    ]
    client.get("/v1/verifications/ACTIVE-1/receipt", headers=other)
    with app.extensions["gateway"].db.sessions() as session:
        rows = session.scalars(select(Receipt).order_by(Receipt.issued_at)).all()
    assert len(rows) == 4
    anonymous = [r for r in rows if r.client_id is None]
    assert [(r.certification_id, r.status, r.client_address) for r in anonymous] == [
        ("ACTIVE-1", "active", "127.0.0.1")
    ]
    listed = client.get("/v1/receipts", headers=headers)
    assert listed.status_code == 200
    receipts = listed.get_json()["receipts"]
    assert sorted(r["reference"] for r in receipts) == sorted(mine)
    lapsed = next(r for r in receipts if r["certification_id"] == "LAPSED-1")
    assert (lapsed["status"], lapsed["on"]) == ("lapsed", None)
    assert set(lapsed) == {"reference", "certification_id", "on", "status", "issued_at"}


def test_receipts_since_a_time_and_bad_queries(app, client, employer):
    _, headers = employer
    client.get("/v1/verifications/ACTIVE-1/receipt", headers=headers)
    with app.extensions["gateway"].db.transaction() as session:
        session.execute(update(Receipt).values(issued_at=clock.now() - timedelta(days=10)))
    client.get("/v1/verifications/LAPSED-1/receipt", headers=headers)
    recent = client.get(f"/v1/receipts?since={days_ago(1)}", headers=headers).get_json()
    assert [r["certification_id"] for r in recent["receipts"]] == ["LAPSED-1"]
    every = client.get("/v1/receipts?since=2020-01-01T00:00:00Z", headers=headers).get_json()
    assert [r["certification_id"] for r in every["receipts"]] == ["ACTIVE-1", "LAPSED-1"]
    lower = client.get("/v1/receipts?since=2020-01-01t00:00:00z", headers=headers).get_json()
    assert lower == every  # RFC 3339 allows lower case `t` and `z`, as in events
    for written in ("2020-01-01T00:00:00", "2020-01-01T02:00:00.123456789%2B02:00"):
        same = client.get(f"/v1/receipts?since={written}", headers=headers).get_json()
        assert same == every, written  # UTC without an offset; fractions as events take them
    assert len(client.get("/v1/receipts?limit=1", headers=headers).json["receipts"]) == 1
    for query, field in (
        ("since=yesterday", "since"),
        ("since=20250501", "since"),
        ("since=2025-W18-4", "since"),
        ("since=2020-01-01 00:00:00Z", "since"),  # as an event's occurred_at is refused
        ("since=2020-01-01T00:00Z", "since"),
        ("limit=0", "limit"),
        ("limit=%D9%A1", "limit"),  # an Arabic-Indic 1: Python's int() reads other scripts' digits
        ("limit=1_0", "limit"),
        ("after=a%00b", "after"),
        ("limit=0&utm_source=mail", "limit"),
    ):
        response = client.get(f"/v1/receipts?{query}", headers=headers)
        assert response.status_code == 422
        assert [e["field"] for e in response.get_json()["errors"]] == [field]
    tracked = client.get("/v1/receipts?utm_source=mail", headers=headers)  # not ours: ignored
    assert tracked.status_code == 200 and tracked.get_json() == every
    assert client.get("/v1/receipts").status_code == 401


def test_a_since_no_utc_time_can_hold_is_422_naming_it(client, employer):
    _, headers = employer
    client.get("/v1/verifications/ACTIVE-1/receipt", headers=headers)
    for since in ("0001-01-01T00:00:00%2B01:00", "9999-12-31T23:59:59-01:00"):
        response = client.get(f"/v1/receipts?since={since}", headers=headers)
        assert response.status_code == 422, since
        assert response.mimetype == "application/problem+json"
        assert [e["field"] for e in response.get_json()["errors"]] == ["since"]
    for since in ("0001-01-01T01:00:00%2B01:00", "0001-01-01", "9999-12-31T23:59:59Z"):
        assert client.get(f"/v1/receipts?since={since}", headers=headers).status_code == 200


def test_receipts_of_one_second_are_paged_through_with_after(app, client, employer):
    _, headers = employer
    _, other = employer_of(app, "Other HR")
    issued = {
        client.get(f"/v1/verifications/{n}/receipt", headers=headers).headers["Receipt-Reference"]
        for n in ("ACTIVE-1", "LAPSED-1", "INACTIVE-1", "REVOKED-1", "ACTIVE-1")
    }
    with app.extensions["gateway"].db.transaction() as session:  # all in one second
        session.execute(update(Receipt).values(issued_at=clock.now().replace(microsecond=0)))
    seen: list[str] = []
    query = "limit=2"
    while True:
        page = client.get(f"/v1/receipts?{query}", headers=headers).get_json()["receipts"]
        seen += [r["reference"] for r in page]
        if len(page) < 2:
            break
        query = f"limit=2&after={page[-1]['reference']}"
    assert seen == sorted(issued)
    foreign = client.get("/v1/receipts", headers=other)
    assert foreign.status_code == 200 and foreign.get_json()["receipts"] == []
    response = client.get(f"/v1/receipts?after={seen[0]}", headers=other)  # not theirs
    assert response.status_code == 422
    assert [e["field"] for e in response.get_json()["errors"]] == ["after"]


#: When the receipts of `issue_at_seconds` were issued, give or take their seconds.
START = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


def issue_at_seconds(app, client, headers, seconds: list[int]) -> list[str]:
    """Receipts issued to the client of `headers`, one at each of `seconds` after START (repeats:
    receipts of one second); their references, oldest first, each second's by reference."""
    at: dict[str, datetime] = {}
    for second in seconds:
        issued = client.get("/v1/verifications/ACTIVE-1/receipt", headers=headers)
        at[issued.headers["Receipt-Reference"]] = START + timedelta(seconds=second)
    with app.extensions["gateway"].db.transaction() as session:
        for jti, issued_at in at.items():
            session.execute(update(Receipt).where(Receipt.jti == jti).values(issued_at=issued_at))
    return sorted(at, key=lambda jti: (at[jti], jti))


def pages(client, headers, limit: int, query: str = "") -> list[list[str]]:
    """The references of every page of `GET /v1/receipts`, following `after`."""
    found: list[list[str]] = []
    after = ""
    while True:
        page = client.get(f"/v1/receipts?limit={limit}{query}{after}", headers=headers)
        found.append([r["reference"] for r in page.get_json()["receipts"]])
        if len(found[-1]) < limit:
            return found
        after = f"&after={found[-1][-1]}"


def test_pages_after_a_receipt_list_each_once_in_order_across_seconds(app, client, employer):
    _, headers = employer
    _, other = employer_of(app, "Other HR")
    issue_at_seconds(app, client, other, [1, 2, 2])  # not theirs: never listed
    ordered = issue_at_seconds(app, client, headers, [3, 1, 3, 2, 3, 3, 5, 2, 4, 5])
    for limit in (1, 2, 3, 4, 10):
        found = pages(client, headers, limit)
        assert [ref for page in found for ref in page] == ordered, limit
        assert all(len(page) == limit for page in found[:-1])
    since = (START + timedelta(seconds=3)).isoformat().replace("+00:00", "Z")
    later = pages(client, headers, 2, f"&since={since}")
    assert [ref for page in later for ref in page] == ordered[3:]


def test_a_page_after_a_receipt_seeks_the_clients_index(app, client, employer, database_url):
    """The page starts where `after` left off in the index (client_id, issued_at, jti): the
    database finds its first receipt without reading the client's earlier ones."""
    _, headers = employer
    references = issue_at_seconds(app, client, headers, [1, 1, 2])
    engine = app.extensions["gateway"].db.engine
    with statements_on(engine, "receipts") as seen:
        page = client.get(f"/v1/receipts?after={references[0]}", headers=headers)
    assert [r["reference"] for r in page.get_json()["receipts"]] == references[1:]
    [(statement, parameters)] = [(text, values) for text, values in seen if "LIMIT" in text]
    if database_url.startswith("sqlite"):
        assert "(client_id=? AND (issued_at,jti)>(?,?))" in plan_of(engine, statement, parameters)
        return
    # A table this small is read whole, or sorted: left only the index's own order, the plan
    # shows which conditions the index scan seeks with (Index Cond).
    off = ("seqscan", "bitmapscan", "sort", "incremental_sort")
    plan = plan_of(engine, statement, parameters, off=off).splitlines()
    [seek] = [line for line in plan if "Index Cond:" in line]
    assert "client_id" in seek and "ROW(issued_at, (jti)::text) > ROW(" in seek, plan
    assert not any("Filter:" in line for line in plan), plan


def employer_of(app, name: str) -> tuple[str, dict[str, str]]:
    """(client id, headers) of a new API client `name` with `verifications:read`."""
    client_id, secret = register_client(app, "verifications:read", name)
    token = app.test_client().post(
        "/oauth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret)
    )
    return client_id, {"Authorization": f"Bearer {token.get_json()['access_token']}"}


def test_old_receipt_records_are_pruned_daily_and_by_command(app, client, monkeypatch):
    for number in ("ACTIVE-1", "LAPSED-1"):
        client.get(f"/v1/verifications/{number}/receipt")
    svc = app.extensions["gateway"]
    retention = svc.settings.receipt_retention_days
    with svc.db.transaction() as session:
        session.execute(
            update(Receipt)
            .where(Receipt.certification_id == "LAPSED-1")
            .values(issued_at=clock.now() - timedelta(days=retention + 1))
        )
    monkeypatch.setenv("DATABASE_URL", svc.settings.database_url)
    result = CliRunner().invoke(cli, ["receipts", "prune"])
    assert result.exit_code == 0, result.output
    assert f"pruned 1 receipts older than {retention} days" in result.output
    with svc.db.sessions() as session:
        assert [r.certification_id for r in session.scalars(select(Receipt))] == ["ACTIVE-1"]


def test_the_daily_sweep_prunes_receipts_too(app, client, monkeypatch):
    from jobs.cron import run_daily_sweep
    from jobs.engine import context

    client.get("/v1/verifications/ACTIVE-1/receipt")
    svc = app.extensions["gateway"]
    with svc.db.transaction() as session:
        session.execute(update(Receipt).values(issued_at=clock.now() - timedelta(days=10_000)))
    monkeypatch.setattr(context, "services", lambda: svc)
    assert run_daily_sweep()["receipts_pruned"] == 1


# --- key rotation ------------------------------------------------------------------------------


def test_receipts_signed_before_a_rotation_still_verify(app, client):
    svc = app.extensions["gateway"]
    old = client.get("/v1/verifications/ACTIVE-1/receipt").get_data(as_text=True)
    signing.rotate(svc.settings.signing_keys_file)
    svc._keys = None  # the process reads the rotated set (as a restart would)
    new_kid = svc.keys.signing_kid(signing.ES256)
    new = client.get("/v1/verifications/ACTIVE-1/receipt").get_data(as_text=True)
    assert jwt.get_unverified_header(new)["kid"] == new_kid
    assert jwt.get_unverified_header(old)["kid"] != new_kid
    assert decode(client, old)["sub"] == decode(client, new)["sub"] == "ACTIVE-1"
    page = client.get("/verify/receipt", query_string={"receipt": old})
    assert page.status_code == 200 and "Genuine receipt" in page.get_data(as_text=True)


# --- /verify/receipt ---------------------------------------------------------------------------


def tampered(token: str, **changes: object) -> str:
    """`token` with its payload changed and its signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    forged = base64.urlsafe_b64encode(json.dumps({**claims, **changes}).encode()).rstrip(b"=")
    return f"{header}.{forged.decode()}.{signature}"


def test_the_check_page_shows_a_genuine_receipt_then_and_now(app, client):
    token = client.get("/v1/verifications/ACTIVE-1/receipt").get_data(as_text=True)
    record(app, revoked(days_ago(0), cert="ACTIVE-1"))
    page = client.get("/verify/receipt", query_string={"receipt": token})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Genuine receipt" in html and "Registry of Allied Health" in html
    assert "What it said" in html and "What is true now" in html
    assert "<strong>Active</strong>" in html and "<strong>Revoked</strong>" in html
    assert "The status has changed since the receipt was issued." in html
    assert html.count("<strong>What to do:</strong>") == 1  # advice for now, not for then
    assert decode(client, token)["jti"] in html


def test_the_check_page_of_a_receipt_for_a_past_day_says_what_differs_from_that_day(
    client, employer
):
    _, headers = employer
    then = clock.now().date() - timedelta(days=30)  # REVOKED-1 was active then, revoked since
    receipt = client.get(f"/v1/verifications/REVOKED-1/receipt?on={then}", headers=headers)
    page = client.get("/verify/receipt", query_string={"receipt": receipt.get_data(as_text=True)})
    html = page.get_data(as_text=True)
    long_then = f"{then.day} {then:%B %Y}"
    assert f"The status today differs from the status on {long_then} that the receipt states." in (
        html
    )
    assert "since the receipt was issued" not in html
    assert f'<time datetime="{then}">{long_then}</time>' in html


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: tampered(token, status="active"),
        lambda token: token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB"),
        lambda token: "not a receipt",
        lambda token: jwt.encode({"sub": "LAPSED-1", "status": "active"}, "k" * 32, "HS256"),
    ],
)
def test_a_tampered_or_foreign_receipt_is_refused(client, forge):
    token = client.get("/v1/verifications/LAPSED-1/receipt").get_data(as_text=True)
    page = client.get("/verify/receipt", query_string={"receipt": forge(token)})
    assert page.status_code == 422
    html = page.get_data(as_text=True)
    assert "Not a genuine receipt" in html and "Genuine receipt" not in html
    assert "<strong>Active</strong>" not in html


def test_the_high_s_twin_of_a_genuine_receipt_is_genuine_to_both_checks(client):
    """A receipt's signature (r, s) turned into (r, n - s), as half of those signed before the
    gateway kept to the low-S form are, is another valid ECDSA signature of the same claims:
    both the receipt page and the credential check take it as they take the receipt."""
    token = client.get("/v1/verifications/LAPSED-1/receipt").get_data(as_text=True)
    twin = high_s_twin(token)
    assert twin != token
    assert jwt.decode(twin, options={"verify_signature": False}) == decode(client, token)
    for shown in (token, twin):
        page = client.get("/verify/receipt", query_string={"receipt": shown})
        assert page.status_code == 200
        assert "Genuine receipt" in page.get_data(as_text=True)
        checked = client.post("/v1/credentials/verify", json={"credential": shown}).get_json()
        assert checked["checks"][0]["message"] == "Signed by us, but not an Open Badges credential."


@pytest.mark.parametrize(
    ("changes", "signed_as"),
    [
        ({"iss": "https://elsewhere.example"}, {}),  # a gateway given the same keys
        ({"iss": None}, {}),
        ({"sub": "ACTIVE-1"}, {}),  # a sub other than the certification stated
        ({}, {"alg": signing.RS256}),  # the credentials' key
        ({}, {"typ": "vc+jwt"}),
    ],
    ids=["other-iss", "no-iss", "other-sub", "rs256", "other-typ"],
)
def test_a_receipt_signed_by_a_published_key_but_not_as_receipts_are_is_refused(
    app, client, changes, signed_as
):
    """Only a signature by this gateway's key, over what this gateway puts in a receipt, is
    called genuine: the checks the README's offline verifier makes, and a little more."""
    token = client.get("/v1/verifications/LAPSED-1/receipt").get_data(as_text=True)
    claims = {**decode(client, token), **changes}
    claims = {name: value for name, value in claims.items() if value is not None}
    forged = app.extensions["gateway"].keys.sign(claims, **{"typ": "JWT", **signed_as})
    page = client.get("/verify/receipt", query_string={"receipt": forged})
    assert page.status_code == 422
    assert "Not a genuine receipt" in page.get_data(as_text=True)
    resigned = app.extensions["gateway"].keys.sign(decode(client, token), typ="JWT")
    assert client.get("/verify/receipt", query_string={"receipt": resigned}).status_code == 200


def test_a_receipt_signed_by_a_clock_a_little_ahead_is_genuine_and_one_not_issued_yet_is_not(
    app, client
):
    """A receipt's iat is the second it was signed: one signed where the clock runs up to a
    minute ahead is genuine; one dated later, or whose iat is not a time, is refused, as PyJWT
    refuses an iat in its future."""
    token = client.get("/v1/verifications/LAPSED-1/receipt").get_data(as_text=True)
    claims = decode(client, token)
    keys = app.extensions["gateway"].keys
    now = int(clock.now().timestamp())
    ahead = keys.sign({**claims, "iat": now + 30}, typ="JWT")
    assert client.get("/verify/receipt", query_string={"receipt": ahead}).status_code == 200
    refusals = {
        now + 3600: "its iat is in the future: it was not issued yet",
        "2026-01-01T00:00:00Z": "its iat is not a time in whole seconds",
        float(now): "its iat is not a time in whole seconds",
        True: "its iat is not a time in whole seconds",
        None: "its iat is not a time in whole seconds",
    }
    for iat, why in refusals.items():
        forged = keys.sign({**claims, "iat": iat}, typ="JWT")
        page = client.get("/verify/receipt", query_string={"receipt": forged})
        assert page.status_code == 422, iat
        assert f"What is wrong: {why}." in page.get_data(as_text=True), iat


def test_the_check_page_without_a_receipt_is_the_form(client):
    page = client.get("/verify/receipt")
    assert page.status_code == 200
    assert '<label for="receipt">' in page.get_data(as_text=True)


def qr_modules(svg: str) -> set[tuple[int, int]]:
    """The dark modules of a QR code drawn as segno draws one (a path of runs along each row),
    counted from its top left module."""
    path = re.search(r' d="([^"]+)"', svg)[1]
    x = y = 0.0
    dark = set()
    for op, dx, dy in re.findall(r"([Mmh])(-?[\d.]+)(?: (-?[\d.]+))?", path):
        if op == "M":  # to a point
            x, y = float(dx), float(dy)
            continue
        if op == "h":  # a run of dark modules
            dark.update((int(x) + n, int(y)) for n in range(int(dx)))
        x, y = x + float(dx), y + float(dy or 0)
    left, top = min(c for c, _ in dark), min(r for _, r in dark)
    return {(c - left, r - top) for c, r in dark}


def encodes(svg: str, text: str) -> bool:
    """Whether the QR code drawn in `svg` is the one of `text` (at some error correction level)."""
    drawn = qr_modules(svg)
    for level in "lmqh":
        matrix = segno.make(text, error=level, boost_error=False).matrix
        if drawn == {(c, r) for r, row in enumerate(matrix) for c, dark in enumerate(row) if dark}:
            return True
    return False


def test_the_proof_page_issues_a_recorded_receipt_with_a_qr_code_of_the_live_check(app, client):
    page = client.get("/verify/proof?certification_id=ACTIVE-1", headers={"Host": "evil.example"})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "evil.example" not in html  # a printed page names PUBLIC_BASE_URL only
    assert f"{BASE}/verify/receipt" in html and f"{BASE}/.well-known/jwks.json" in html
    with app.extensions["gateway"].db.sessions() as session:
        [row] = session.scalars(select(Receipt)).all()
    assert row.jti in html and row.client_address == "127.0.0.1"
    assert 'class="qr"><title>QR code of the live check</title>' in html
    assert f"{BASE}/verify?certification_id=ACTIVE-1" in html
    qr = html.split('<figure class="qr-code">')[1].split("</svg>")[0]
    assert encodes(qr, f"{BASE}/verify?certification_id=ACTIVE-1")
    token = html.split('<pre class="jws" id="receipt-token">')[1].split("</pre>")[0]
    assert decode(client, token)["jti"] == row.jti
    assert client.get("/verify/proof?certification_id=NOPE-1").status_code == 404


def test_a_head_request_issues_no_receipt(app, client, employer):
    _, headers = employer
    assert client.head("/v1/verifications/ACTIVE-1/receipt", headers=headers).status_code == 200
    assert client.head("/verify/proof?certification_id=ACTIVE-1").status_code == 200
    yesterday = f"/v1/verifications/ACTIVE-1/receipt?on={days_ago(1)}"
    assert client.head(yesterday, headers=headers).status_code == 200
    assert client.head(yesterday).status_code == 401
    assert client.head("/v1/verifications/NOPE/receipt").status_code == 404
    assert client.head("/verify/proof?certification_id=NOPE").status_code == 404
    with app.extensions["gateway"].db.sessions() as session:
        assert session.scalars(select(Receipt)).all() == []
    assert client.get("/v1/receipts", headers=headers).get_json()["receipts"] == []


@pytest.mark.usefixtures("within_one_minute")
def test_checking_a_receipt_reads_the_record_now_and_so_counts_as_a_lookup(database_url, make_app):
    app = make_app(database_url=database_url, jobs_synchronous=True, verify_rate_limit="2/minute")
    record_every_status(app)
    client = app.test_client()
    issued = client.get("/v1/verifications/ACTIVE-1/receipt", environ_base={"REMOTE_ADDR": "::1"})
    employer = {"REMOTE_ADDR": "192.0.2.7"}

    def check():
        receipt = {"receipt": issued.get_data(True)}
        return client.get("/verify/receipt", query_string=receipt, environ_base=employer)

    assert [check().status_code for _ in range(2)] == [200, 200]
    over = check()
    assert over.status_code == 429 and 0 < int(over.headers["Retry-After"]) <= 60
    html = over.get_data(as_text=True)
    assert "Please wait a moment" in html and '<label for="receipt">' in html
    assert "What is true now" not in html and "genuine receipt" not in html.lower()
    assert client.get("/verify/receipt", environ_base=employer).status_code == 200  # the form
    assert client.get("/v1/verifications/ACTIVE-1", environ_base=employer).status_code == 429


@pytest.mark.parametrize(
    "path",
    [
        "/v1/verifications/ACTIVE-1/receipt",
        "/v1/verifications/REVOKED-1/receipt",
        f"/v1/verifications/ACTIVE-1/receipt?on={days_ago(1)}",
        "/verify/proof?certification_id=ACTIVE-1",
        "/verify/proof?certification_id=LAPSED-1",
    ],
)
def test_a_head_request_answers_the_headers_and_length_of_the_receipt_a_get_gets(
    app, client, employer, path
):
    """RFC 9110 9.3.2: the headers a GET is answered with, its Content-Length too (a HEAD's `0`
    would be a promise of an empty receipt), but no body and no receipt issued; it names no
    `Receipt-Reference`, there being no receipt."""
    _, headers = employer
    head = client.head(path, headers=headers)
    with app.extensions["gateway"].db.sessions() as session:
        assert session.scalars(select(Receipt)).all() == []
    got = client.get(path, headers=headers)
    assert head.status_code == got.status_code == 200
    assert head.get_data() == b""
    assert int(head.headers["Content-Length"]) == len(got.get_data()) > 0
    assert "Receipt-Reference" not in head.headers
    differ = {"Content-Length", "Receipt-Reference", "X-Request-ID"}
    assert {k: v for k, v in head.headers.items() if k not in differ} == {
        k: v for k, v in got.headers.items() if k not in differ
    }
