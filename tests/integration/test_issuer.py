"""Who vouches: the certifying body's name, site, contact and logo on every verification answer and
on the /verify pages; each status explained in plain words with what an employer should do."""

from __future__ import annotations

import pytest

from gateway.platform.config import Settings
from tests.support.verification import record_every_status

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16
ISSUER = {
    "issuer_name": "American Medical Technologists",
    "issuer_url": "https://amt.example.org",
    "issuer_contact": "registry@amt.example.org",
    "issuer_logo": "logo.png",
    "public_base_url": "https://verify.amt.example.org",
}


@pytest.fixture
def app(make_app, tmp_path):
    (tmp_path / "instance").mkdir(exist_ok=True)
    (tmp_path / "instance" / "logo.png").write_bytes(PNG)
    (tmp_path / "secret.txt").write_text("not for the web")
    app = make_app(jobs_synchronous=True, **ISSUER)
    record_every_status(app)
    return app


EXPECTED = {
    "name": "American Medical Technologists",
    "url": "https://amt.example.org",
    "contact": "registry@amt.example.org",
    "logo": "https://verify.amt.example.org/verify/logo",
}


def test_every_verification_answer_names_the_issuer(client, token_for):
    assert client.get("/v1/verifications/ACTIVE-1").get_json()["issuer"] == EXPECTED
    results = client.post(
        "/v1/verifications/batch",
        json={"certification_ids": ["LAPSED-1", "NOPE"]},
        headers=token_for("verifications:read"),
    ).get_json()["results"]
    assert results[0]["issuer"] == EXPECTED


def test_without_a_public_address_the_logo_is_on_the_requests_host(make_app, tmp_path):
    (tmp_path / "instance").mkdir(exist_ok=True)
    (tmp_path / "instance" / "logo.png").write_bytes(PNG)
    app = make_app(jobs_synchronous=True, issuer_logo="logo.png")
    record_every_status(app)
    body = app.test_client().get("/v1/verifications/ACTIVE-1", base_url="http://lookup.test:8080")
    assert body.get_json()["issuer"]["logo"] == "http://lookup.test:8080/verify/logo"


def test_the_page_names_who_vouches_in_its_title_header_and_footer(client):
    html = client.get("/verify?certification_id=ACTIVE-1").get_data(as_text=True)
    title = "<title>Ada Lovelace: Active · Verify a certification · American Medical Technologists"
    assert f"{title}</title>" in html
    assert '<a href="https://amt.example.org">American Medical Technologists</a>' in html
    assert '<a href="mailto:registry@amt.example.org">registry@amt.example.org</a>' in html
    assert '<img class="logo" src="/verify/logo" alt="">' in html


@pytest.mark.parametrize(
    ("given", "link", "email"),
    [
        (
            "mailto:registry@amt.example.org",
            '<a href="mailto:registry@amt.example.org">registry@amt.example.org</a>',
            "registry@amt.example.org",
        ),
        (
            "https://amt.example.org/contact",
            '<a href="https://amt.example.org/contact">https://amt.example.org/contact</a>',
            None,
        ),
    ],
)
def test_the_contact_is_linked_on_the_page_and_an_email_address_is_the_profiles(
    make_app, given, link, email
):
    """An e-mail address written as a `mailto:` link is taken as the address itself."""
    contact = Settings.from_env({"ISSUER_CONTACT": given}).issuer_contact
    app = make_app(jobs_synchronous=True, **{**ISSUER, "issuer_contact": contact})
    record_every_status(app)
    client = app.test_client()
    assert link in client.get("/verify?certification_id=ACTIVE-1").get_data(as_text=True)
    assert client.get("/issuer").get_json().get("email") == email


@pytest.mark.parametrize(
    ("status", "words"),
    [
        ("active", "it can still become inactive before then"),
        ("inactive", "the member can restore it by paying the missing fees"),
        ("lapsed", "Do not rely on this certification"),
        ("revoked", "American Medical Technologists withdrew this certification"),
    ],
)
def test_each_status_is_explained_with_what_to_do(client, status, words):
    html = client.get(f"/verify?certification_id={status.upper()}-1").get_data(as_text=True)
    assert words in html
    assert "<strong>What to do:</strong>" in html


def test_inactive_tells_the_employer_whom_the_member_should_contact(client):
    html = client.get("/verify?certification_id=INACTIVE-1").get_data(as_text=True)
    assert "Ask the member to contact American Medical Technologists" in html


def test_developer_notes_are_behind_a_link_to_the_docs(client):
    html = client.get("/verify").get_data(as_text=True)
    assert '<a href="/docs">' in html
    assert "GET /v1/verifications" not in html


def test_the_logo_is_served_as_an_image_and_nothing_else_is(client, make_app):
    response = client.get("/verify/logo")
    assert response.status_code == 200
    assert response.mimetype == "image/png"
    assert response.data == PNG
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert make_app().test_client().get("/verify/logo").status_code == 404  # none configured


@pytest.mark.parametrize(
    "name", ["../secret.txt", "gateway.sqlite3", "signing-keys.json", ".x.png"]
)
def test_the_logo_setting_never_serves_another_file(make_app, name, caplog):
    """Nor does an answer link to a logo that is not served."""
    app = make_app(jobs_synchronous=True, issuer_logo=name)
    response = app.test_client().get("/verify/logo")
    assert response.status_code == 404
    assert f"ISSUER_LOGO {name!r} is not a PNG, JPEG or SVG file" in caplog.text
    assert b"not for the web" not in response.data and b"keys" not in response.data
    record_every_status(app)
    answer = app.test_client().get("/v1/verifications/ACTIVE-1").get_json()
    assert answer["issuer"]["logo"] is None


def test_the_stylesheet_has_a_print_layout_without_the_form(client):
    css = client.get("/static/verify.css").get_data(as_text=True)
    print_rules = css[css.index("@media print") :]
    assert "form" in print_rules and "display: none" in print_rules
