"""The `gateway` command: its group, every subcommand of the modules beside this one, and the
console script's entry point."""

from __future__ import annotations

import click
from flask import Flask

from gateway.cli import badges, clients, db, jobs, keys, receipts, serving, sweep, sync
from gateway.cli.group import GatewayGroup, command_app

#: The commands Flask's own `flask` command has already.
FLASK_COMMANDS = frozenset({"run", "shell", "routes"})


@click.group(cls=GatewayGroup, create_app=command_app, add_version_option=False)
@click.version_option(package_name="credential-gateway", prog_name="gateway")
def cli() -> None:
    """Operate the credential gateway."""


cli.add_command(serving.run_development)  # in place of Flask's, which prints a banner on stdout
for subcommand in (
    serving.serve,
    serving.worker,
    db.db,
    clients.clients,
    keys.keys,
    jobs.jobs,
    sweep.sweep_command,
    badges.badges,
    receipts.receipts,
    sync.sync,
):
    cli.add_command(subcommand)


def register(app: Flask) -> None:
    """Put the operators' commands on `app.cli` too, so that
    `flask --app gateway.bootstrap:create_app <command>` works."""
    for name, command in cli.commands.items():
        if name not in FLASK_COMMANDS:
            app.cli.add_command(command, name)


def main() -> None:
    """Console-script entry point."""
    cli(prog_name="gateway")
