"""`gateway serve` and POLICY_FILE: its web processes judge with the policy table the server last
accepted, through web processes gunicorn restarts and SIGHUPs onto a file made unfit since."""

from __future__ import annotations

import re
import signal
from pathlib import Path

import requests

from gateway.rules.policy import DEFAULT_POLICY_FILE
from tests.support.serving import (
    free_port,
    hang_up_refused,
    kill_web_process,
    logged_errors,
    serve_env,
    serving,
    wait_for,
)

RMA = "Registered Medical Assistant"


def _policy(name: str) -> str:
    """The packaged policy table, with its RMA credential called `name`."""
    return DEFAULT_POLICY_FILE.read_text().replace(f'name = "{RMA}"', f'name = "{name}"', 1)


#: A policy table that fails validation: a number of [rules] beyond its bounds.
UNFIT = re.sub(r"^cycle_years = 3\b", "cycle_years = 99", _policy(RMA), count=1, flags=re.M)


#: A policy table without the RMA credential, which certifications hold.
WITHOUT_RMA = re.sub(r"\[credentials\.RMA\][^[]*", "", _policy(RMA), count=1)


def _names(port: int, asked: int = 1) -> set[str]:
    """The names of the RMA credential in `asked` answers of `gateway serve` on `port`, each on a
    new connection (which the kernel gives to any of the web processes)."""
    names = set()
    for _ in range(asked):
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/issuer/achievements/RMA", timeout=10)
        except requests.ConnectionError:  # a web process stopping as a reload ends
            names.add("(no answer)")
            continue
        assert answer.status_code == 200, answer.text
        names.add(answer.json()["name"])
    return names


OLD, NEW = "Registered Medical Assistant (2026)", "Registered Medical Assistant (2027)"


def _settings(tmp_path: Path, postgres_url: str, workers: int) -> tuple[Path, int, dict[str, str]]:
    """A policy file that calls RMA `OLD`, and a port and the environment of a `gateway serve` of
    `workers` web processes there with it."""
    path = tmp_path / "policy.toml"
    path.write_text(_policy(OLD))
    port = free_port()
    env = serve_env(tmp_path, postgres_url, port, WEB_WORKERS=str(workers), POLICY_FILE=str(path))
    return path, port, env


def test_a_web_process_restarted_onto_an_unfit_policy_file_judges_with_the_policy_it_had(
    tmp_path, postgres_url
):
    """A web process gunicorn starts in place of one that died read the policy file again, and
    did not start on one that fails validation: gunicorn then stopped the whole server. It serves
    with the policy table the server had, and one ERROR names the file and what is wrong."""
    path, port, env = _settings(tmp_path, postgres_url, workers=1)
    log = tmp_path / "stderr.log"
    with serving(env, log) as proc:
        assert _names(port) == {OLD}
        path.write_text(UNFIT)
        killed = kill_web_process(proc, log)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert _names(port) == {OLD}
    assert logged_errors(log) == [
        f"Worker (pid:{killed}) was sent SIGKILL! Perhaps out of memory?",
        f"POLICY_FILE: policy file {path} [rules]: 'cycle_years' must be from 1 to 10, not 99; "
        "a web process starting now serves with the keys and policy the server had",
    ]


def test_a_hang_up_onto_an_unfit_policy_file_keeps_serving_with_the_policy_it_had(
    tmp_path, postgres_url, served_certification
):
    """SIGHUP has gunicorn start new web processes and stop the old ones: on a policy file the new
    ones refused (one that fails validation, one that lacks a credential certifications hold),
    the whole server stopped. It keeps serving, with one ERROR naming the file and what is wrong;
    a HUP onto a fit file still brings its table into every web process."""
    path, port, env = _settings(tmp_path, postgres_url, workers=2)
    log = tmp_path / "stderr.log"
    with serving(env, log) as proc:
        for unfit in (UNFIT, WITHOUT_RMA):
            path.write_text(unfit)
            hang_up_refused(proc, log)
            assert _names(port, asked=8) == {OLD}

        path.write_text(_policy(NEW))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _names(port, asked=8) == {NEW}, log)
    kept = "not reloaded: the web processes keep serving with the keys and policy they had"
    assert logged_errors(log) == [
        f"POLICY_FILE: policy file {path} [rules]: 'cycle_years' must be from 1 to 10, not 99; "
        + kept,
        "POLICY_FILE: the credential policy table lacks RMA, which certifications hold; put it "
        "back (a credential no longer offered stays in the table); " + kept,
    ]
