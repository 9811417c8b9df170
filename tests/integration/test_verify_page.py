"""The /verify page: its HTML answers, and an employer using it in a real headless Chromium."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from werkzeug.serving import make_server

from gateway.usecases import receipts
from tests.support.events import granted
from tests.support.verification import days_ago, record, record_every_status

pytestmark = pytest.mark.clock_sensitive  # its dates are relative to the gateway's today

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PHONE = {"width": 360, "height": 740}
WORDS = {
    "active": "Active",
    "inactive": "Inactive — not in good standing",
    "lapsed": "Lapsed",
    "revoked": "Revoked",
}


@pytest.fixture
def app(make_app):
    """The embedded default with one certification in each status."""
    app = make_app(jobs_synchronous=True)
    record_every_status(app)
    return app


# --- the HTML answers --------------------------------------------------------------------------


def test_the_bare_page_is_html_with_a_labelled_form_and_no_card(client):
    response = client.get("/verify")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert '<label for="certification_id">' in html
    assert 'name="certification_id"' in html and 'method="get"' in html
    assert "<h1>Verify a certification</h1>" in html
    assert 'class="card' not in html


@pytest.mark.parametrize("status", list(WORDS))
def test_the_card_names_the_status_in_words(client, status):
    response = client.get(f"/verify?certification_id={status.upper()}-1")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert f"<strong>{WORDS[status]}</strong>" in html
    assert "Registered Medical Assistant" in html and "Ada Lovelace" in html


def test_an_unknown_number_shows_a_not_found_card_with_status_404(client):
    response = client.get("/verify?certification_id=NOPE-404")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "No certification found" in html and "NOPE-404" in html


def test_an_empty_number_asks_for_one_with_status_400(client):
    response = client.get("/verify?certification_id=+")
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "Enter a certification number." in html
    assert 'aria-invalid="true"' in html


def test_the_pages_ignore_parameters_they_do_not_use(client):
    assert client.get("/verify?certification_id=ACTIVE-1&utm_source=mail").status_code == 200
    assert client.get("/verify?utm_source=mail").status_code == 200
    assert client.get("/verify/receipt?utm_source=mail").status_code == 200


def test_the_pages_ignore_authorization_unlike_the_credential_check_api(client, token_for):
    """A browser sends no bearer token to a page; one that comes anyway changes nothing."""
    for headers in ({"Authorization": "Bearer not-a-token"}, token_for("events:write")):
        assert client.get("/verify?certification_id=ACTIVE-1", headers=headers).status_code == 200
        assert client.get("/verify/credential", headers=headers).status_code == 200
    api = "/v1/credentials/verify"
    bad = client.post(
        api, json={"credential": "x"}, headers={"Authorization": "Bearer not-a-token"}
    )
    assert bad.status_code == 401
    wrong = client.post(api, json={"credential": "x"}, headers=token_for("events:write"))
    assert wrong.status_code == 403


def test_the_page_escapes_the_number_it_echoes(client):
    html = client.get("/verify?certification_id=<script>x</script>").get_data(as_text=True)
    assert "<script>x" not in html and "&lt;script&gt;x" in html
    padded = client.get("/verify", query_string={"certification_id": ' <b>"x"</b> '})
    assert padded.status_code == 404
    html = padded.get_data(as_text=True)
    assert "<b>" not in html and "&lt;b&gt;&#34;x&#34;&lt;/b&gt;" in html


@pytest.mark.parametrize("typed", [" ACTIVE-1 ", "\tACTIVE-1\u00a0", "ACTIVE-1\r\n"])
def test_the_page_trims_white_space_pasted_around_a_number(client, typed):
    """An employer pasting the number from a document with the space or line end around it
    gets the card of that number, and the proof of its check."""
    page = client.get("/verify", query_string={"certification_id": typed})
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'value="ACTIVE-1"' in html and "<strong>Active</strong>" in html
    proof = client.get("/verify/proof", query_string={"certification_id": typed})
    assert proof.status_code == 200
    assert "/verify?certification_id=ACTIVE-1" in proof.get_data(as_text=True)


@pytest.mark.usefixtures("within_one_minute")
def test_the_page_over_its_limit_answers_html_429_with_retry_after(make_app):
    client = make_app(verify_rate_limit="1/minute").test_client()
    assert client.get("/verify?certification_id=A-1").status_code == 404
    response = client.get("/verify?certification_id=A-1")
    assert response.status_code == 429
    assert response.mimetype == "text/html"
    html = response.get_data(as_text=True)
    assert "Too many lookups" in html and "aria-invalid" not in html
    assert 'value="A-1"' in html  # the number typed stays in the form, to try again later
    assert int(response.headers["Retry-After"]) > 0
    assert client.get("/verify").status_code == 200  # the bare form is not a lookup


# --- in a real browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, driven by Playwright; never a downloaded browser."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"the browser tests need Debian's chromium at {CHROMIUM} "
            "(`make test` installs it; or `sudo apt-get install chromium`)",
            pytrace=False,
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def base_url(app) -> Iterator[str]:
    """The app served on a loopback port for the browser."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


def open_page(browser: Browser, base_url: str, **context: object) -> Page:
    page = browser.new_context(**context).new_page()
    page.goto(f"{base_url}/verify")
    return page


def look_up(page: Page, number: str) -> int:
    """Type `number` into the labelled field, submit with the button; the answer's status."""
    page.get_by_label("Certification number").fill(number)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Verify").click()
    return navigation.value.status


def card_facts(page: Page) -> dict[str, str]:
    """The result card's terms and their descriptions."""
    card = page.locator("section.card")
    terms = card.locator("dt").all_inner_texts()
    return dict(zip(terms, card.locator("dd").all_inner_texts(), strict=True))


def save_screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_an_employer_without_javascript_fills_the_form_and_reads_the_card(browser, base_url, app):
    page = open_page(browser, base_url, java_script_enabled=False)
    assert look_up(page, "ACTIVE-1") == 200
    assert page.url.endswith("/verify?certification_id=ACTIVE-1")
    assert page.get_by_role("heading", level=1).inner_text() == "Verify a certification"
    assert page.get_by_role("heading", level=2).inner_text() == "Ada Lovelace"
    assert page.locator(".card .status strong").inner_text() == "Active"
    facts = card_facts(page)
    assert facts["Credential"] == "Registered Medical Assistant (RMA)"
    assert facts["Certification number"] == "ACTIVE-1"
    assert facts["Valid through"] and facts["Valid through"] != "Not currently valid"
    assert facts["Checked"].endswith(" UTC")
    assert set(facts) == {
        "Credential",
        "Certification number",
        "Certified since",
        "Valid through",
        "Checked",
    }
    save_screenshot(page, "verify-desktop.png")


def test_the_card_reads_at_360_px_wide_without_sideways_scrolling(browser, base_url):
    page = open_page(browser, base_url, viewport=PHONE)
    assert look_up(page, "INACTIVE-1") == 200
    assert page.locator(".card .status strong").inner_text() == WORDS["inactive"]
    assert card_facts(page)["Valid through"] == "Not currently valid"
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for element in ("input#certification_id", "button", "section.card"):
        box = page.locator(element).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], element
    assert page.evaluate("parseFloat(getComputedStyle(document.body).fontSize)") >= 16
    save_screenshot(page, "verify-360.png")


def test_an_unknown_number_shows_a_friendly_not_found_card_in_the_browser(browser, base_url):
    page = open_page(browser, base_url, viewport=PHONE)
    assert look_up(page, "NOPE-404") == 404
    assert page.get_by_role("heading", level=2).inner_text() == "No certification found"
    assert "NOPE-404" in page.locator("section.card").inner_text()
    save_screenshot(page, "verify-not-found-360.png")


#: A number as long as a number may be (128 characters), with no place to break a line.
LONG_NUMBER = "N" * 127 + "1"
#: The elements whose text runs past them (a card, the screen); a form field scrolls its own.
OVERFLOWING = """() => [document.documentElement, ...document.querySelectorAll('main *')]
  .filter((el) => !['INPUT', 'TEXTAREA'].includes(el.tagName))
  .filter((el) => el.clientWidth && el.scrollWidth > el.clientWidth)
  .map((el) => el.tagName + '.' + el.className)"""


def test_a_number_of_128_characters_wraps_inside_every_page_on_a_phone(browser, base_url, app):
    body = granted(days_ago(30), cert=LONG_NUMBER)
    body["data"]["member"]["member_id"] = "M-LONG"  # a member id is 128 characters at most
    record(app, body)
    answer = app.test_client().get(f"/v1/verifications/{LONG_NUMBER}").get_json()
    no_record = {**answer, "certification_id": f"X{LONG_NUMBER[1:]}"}
    receipt = receipts.issue(
        app.extensions["gateway"], no_record, base_url, client_id=None, client_address=None
    )
    page = browser.new_context(viewport=PHONE, java_script_enabled=False).new_page()
    for path, status in [
        (f"/verify?certification_id=X{LONG_NUMBER[1:]}", 404),  # the not-found card
        (f"/verify?certification_id={LONG_NUMBER}", 200),
        (f"/verify/proof?certification_id={LONG_NUMBER}", 200),
        (f"/verify/receipt?receipt={receipt.token}", 200),  # "no longer on record"
    ]:
        assert page.goto(f"{base_url}{path}").status == status, path
        assert page.evaluate(OVERFLOWING) == [], path
    save_screenshot(page, "verify-long-number-360.png")


def test_the_form_submits_with_the_enter_key(browser, base_url):
    page = open_page(browser, base_url)
    page.get_by_label("Certification number").fill("REVOKED-1")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.locator(".card .status strong").inner_text() == "Revoked"


CONTRAST = """(selectors) => {
  const rgba = (css) => css.match(/[\\d.]+/g).map(Number);
  const luminance = ([r, g, b]) => [r, g, b]
    .map((v) => v / 255)
    .map((v) => (v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4))
    .reduce((sum, v, i) => sum + v * [0.2126, 0.7152, 0.0722][i], 0);
  const background = (el) => {
    for (; el; el = el.parentElement) {
      const c = rgba(getComputedStyle(el).backgroundColor);
      if (c.length === 3 || c[3] > 0) return c;
    }
    return [255, 255, 255];
  };
  return Object.fromEntries(selectors.map((selector) => {
    const el = document.querySelector(selector);
    const [a, b] = [luminance(rgba(getComputedStyle(el).color)), luminance(background(el))];
    return [selector, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)];
  }));
}"""


@pytest.mark.parametrize("status", list(WORDS))
def test_text_meets_wcag_aa_contrast(browser, base_url, status):
    page = open_page(browser, base_url)
    look_up(page, f"{status.upper()}-1")
    selectors = ["h1", ".intro", "label", "button", "h2", ".status strong", "dt", "dd", "footer p"]
    ratios = page.evaluate(CONTRAST, selectors)
    assert {s: r for s, r in ratios.items() if r < 4.5} == {}


# --- proof of a check: the receipt pages in a real browser --------------------------------------


def open_proof(browser: Browser, base_url: str, **context: object) -> Page:
    """Look ACTIVE-1 up and follow "Download proof of this check"."""
    page = open_page(browser, base_url, java_script_enabled=False, **context)
    look_up(page, "ACTIVE-1")
    with page.expect_navigation() as navigation:
        page.get_by_role("link", name="Download proof of this check").click()
    assert navigation.value.status == 200
    return page


@pytest.mark.parametrize(
    ("viewport", "name"), [(PHONE, "receipt-360.png"), ({"width": 1280, "height": 900}, None)]
)
def test_the_receipt_page_reads_on_a_phone_and_a_desktop(browser, base_url, viewport, name):
    page = open_proof(browser, base_url, viewport=viewport)
    assert page.get_by_role("heading", level=1).inner_text() == "Proof of verification"
    assert page.locator(".card .status strong").inner_text() == "Active"
    reference = page.locator("dl.reference dd code").inner_text()
    assert reference.startswith("rcpt_")
    qr = page.locator("svg.qr").bounding_box()
    assert qr["width"] >= 100 and qr["x"] + qr["width"] <= viewport["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= viewport["width"]
    token = page.locator("pre.jws").inner_text()
    assert token.count(".") == 2
    box = page.locator("pre.jws").bounding_box()
    assert box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
    save_screenshot(page, name or "receipt-desktop.png")


def test_the_receipt_prints_without_the_forms_and_links(browser, base_url):
    page = open_proof(browser, base_url)
    page.emulate_media(media="print")
    assert not page.locator(".actions").first.is_visible()
    assert not page.locator("footer .links").is_visible()
    assert page.locator("svg.qr").is_visible() and page.locator("pre.jws").is_visible()
    assert page.locator(".card .status strong").is_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.pdf(path=str(ARTIFACTS / "receipt.pdf"))  # headless Chromium prints it


def test_an_employer_pastes_a_receipt_and_sees_it_is_genuine(browser, base_url):
    page = open_proof(browser, base_url, viewport=PHONE)
    token = page.locator("pre.jws").inner_text()
    page.goto(f"{base_url}/verify/receipt")
    page.get_by_label("Receipt", exact=True).fill(token)
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Check").click()
    assert navigation.value.status == 200
    assert page.get_by_role("heading", name="Genuine receipt").is_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    save_screenshot(page, "receipt-check-360.png")
    page.get_by_label("Receipt", exact=True).fill(token[:-6] + "AAAAAA")
    with page.expect_navigation() as navigation:
        page.get_by_role("button", name="Check").click()
    assert navigation.value.status == 422
    assert page.get_by_role("heading", name="Not a genuine receipt").is_visible()
