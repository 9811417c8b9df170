"""The README's quick start, run as written against `gateway run` on the embedded default: its shell
block (the client, the token, the two events, the standing, the lookup) gives the answers its
comments describe, and its offline check of a receipt accepts one the gateway signed."""

from __future__ import annotations

import calendar
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support.serving import free_port, start_run

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block(section: str, language: str) -> str:
    """The first code block in `language` of the README's `section` (a `## ` heading)."""
    text = README.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(rf"^```{language}\n(.*?)^```$", body, re.MULTILINE | re.DOTALL)
    assert match, f"no {language} block in the README's {section}"
    return match.group(1)


def json_documents(text: str) -> list[Any]:
    """The JSON documents printed one after another (curl prints no newline after a body)."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        documents.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return documents


def months_before(day: date, months: int) -> date:
    """The first day of the month `months` before `day`'s."""
    index = day.year * 12 + day.month - 1 - months
    return date(index // 12, index % 12 + 1, 1)


@pytest.fixture(scope="module")
def quick_start(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """`gateway run` on the embedded default, as `make run` starts it, after the quick start's
    shell block has run against it: its URL and what the block printed."""
    tmp_path = tmp_path_factory.mktemp("quick-start")
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["INSTANCE_PATH"] = str(tmp_path / "instance")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    script = readme_block("Quick start", "sh")
    assert script.startswith("GW=http://127.0.0.1:5000\n")
    script = script.replace("GW=http://127.0.0.1:5000", f"GW={url}", 1)
    script = script.replace(".venv/bin/", f"{os.path.dirname(sys.executable)}/")
    proc = start_run(env, port, tmp_path / "stderr.log")
    try:
        ran = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 0, ran.stderr
        yield url, ran.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_the_quick_start_posts_its_events_and_the_employer_sees_the_certification_active(
    quick_start,
):
    url, printed = quick_start
    granted, paid, standing, lookup = json_documents(printed)

    today = date.fromisoformat(granted["standing"]["as_of"])
    granted_on = months_before(today, 13)
    assert granted["status"] == "accepted"  # step 3: the grant, its first fee unpaid
    assert granted["standing"]["status"] == "inactive"
    assert granted["standing"]["certified_on"] == granted_on.isoformat()
    [reason] = granted["standing"]["reasons"]
    assert reason["rule"] == "FEE-OVERDUE"
    assert f"membership year {granted_on.year + 1}" in reason["message"]
    assert reason["message"].endswith("is unpaid")

    last_month = months_before(today, 1)  # step 4: paid, up to the last day of last month a year on
    a_year_on = date(
        last_month.year + 1,
        last_month.month,
        calendar.monthrange(last_month.year + 1, last_month.month)[1],
    )
    assert paid["status"] == "accepted"
    assert paid["standing"]["status"] == "active" and paid["standing"]["reasons"] == []
    assert paid["standing"]["fees"]["paid_through"] == a_year_on.isoformat()

    assert standing["status"] == "active"  # step 5: the standing, with the badge and the jobs
    assert {"fees", "ccp", "badge", "jobs"} <= standing.keys()

    assert lookup["status"] == "active"  # step 6: what an employer sees
    assert lookup["certification_id"] == "CERT-DEMO-1" and lookup["name"] == "Ada Lovelace"
    assert lookup["credential"] == "RMA"
    assert lookup["credential_name"] == "Registered Medical Assistant"
    assert lookup["certified_since"] == granted_on.isoformat()
    assert lookup["valid_through"] == a_year_on.isoformat()

    page = requests.get(f"{url}/verify", params={"certification_id": "CERT-DEMO-1"}, timeout=10)
    assert page.status_code == 200 and "Ada Lovelace" in page.text


def test_the_readme_offline_check_accepts_a_receipt_of_the_quick_start_certification(
    quick_start,
):
    url, _ = quick_start
    receipt = requests.get(f"{url}/v1/verifications/CERT-DEMO-1/receipt", timeout=10)
    assert receipt.status_code == 200, receipt.text
    code = readme_block("Proof for employers", "python").replace("https://<gateway>", url)
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(code, {"receipt": receipt.text})  # the README's own snippet
    assert printed.getvalue().startswith("Ada Lovelace active ")
