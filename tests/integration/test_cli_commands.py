"""The operators' commands: on the `gateway` script and on the app's `flask` command alike."""

from click.testing import CliRunner

from gateway.cli import cli


def test_the_commands_are_on_the_apps_flask_cli_too(make_app, database_url):
    app = make_app(database_url=database_url)
    runner = app.test_cli_runner()
    assert set(app.cli.commands) >= {"db", "clients", "jobs", "sweep", "badges", "worker", "keys"}
    answer = runner.invoke(args=["jobs", "failed"])
    assert answer.exit_code == 0, answer.output
    assert "no failed jobs" in answer.output


def test_db_current_history_and_downgrade(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    head = runner.invoke(cli, ["db", "current"])
    assert head.exit_code == 0 and "(head)" in head.stdout
    history = runner.invoke(cli, ["db", "history"]).stdout
    assert "<base> -> 0001, initial schema" in history and "(current)" in history
    down = runner.invoke(cli, ["db", "downgrade", "0001"])
    assert down.exit_code == 0, down.output
    assert runner.invoke(cli, ["db", "current"]).stdout.split()[0] == "0001"
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert "(head)" in runner.invoke(cli, ["db", "current"]).stdout
