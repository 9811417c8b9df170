"""`gateway keys`: the signing keys of receipts and credentials."""

from __future__ import annotations

import os

import click
from flask.cli import with_appcontext

from gateway.bootstrap import in_instance
from gateway.cli.group import CommandGroup, one_line
from gateway.platform import signing
from gateway.platform.config import ConfigError, Settings
from gateway.usecases.services import signing_keys
from gateway.web.context import services


@click.group(cls=CommandGroup)
def keys() -> None:
    """The signing keys of receipts and credentials (SIGNING_KEYS_FILE)."""


@keys.command("list")
@with_appcontext
def keys_list() -> None:
    """List the keys and their algorithms: the first of each signs, every one is published and
    verifies."""
    key_set = services().keys
    signers = {key_set.signer(alg).kid for alg in signing.ALGORITHMS.values()}
    for key in key_set.keys:
        role = "signs" if key.kid in signers else "verifies only"
        click.echo(f"{key.kid}  {signing.algorithm_of(key)}  {role}")


@keys.command("rotate")
@with_appcontext
def keys_rotate() -> None:
    """Add a new signing key of each algorithm first; the old ones stay published. Restart the web
    processes."""
    svc = services()
    path = svc.settings.signing_keys_file
    if svc.keys.created:  # this command's start made a fresh set: nothing to rotate
        kids = " ".join(key.kid for key in svc.keys.keys)
        click.echo(f"no signing keys were at {path}: made new ones {kids}")
        return
    try:
        kids = signing.rotate(path)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"new signing keys {' '.join(kids)}; restart the web processes to sign with them")


@keys.command("new-set", with_appcontext=False)
def keys_new_set() -> None:
    """Make a new key set where SIGNING_KEYS_FILE is missing, in place of a lost one that signed
    receipts or credentials (the gateway does not start then): what the lost keys signed no
    longer verifies. Not on a file that exists."""
    try:
        path = in_instance(Settings.from_env()).signing_keys_file
        made = None if os.path.exists(path) else signing_keys(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if made is None or not made.created:  # (another process made one meanwhile)
        raise click.ClickException(
            f"SIGNING_KEYS_FILE: {path} exists: a new set is made only where the file is missing "
            "(to add new keys to it: `gateway keys rotate`)"
        )
    kids = " ".join(key.kid for key in made.keys)
    click.echo(
        f"new signing keys {kids} at {path}: what the keys before them signed no longer "
        "verifies; start the web processes"
    )


@keys.command("retire")
@click.argument("kid")
@with_appcontext
def keys_retire(kid: str) -> None:
    """Remove a key that no longer signs: what it signed stops verifying.

    Put `--` before a KID that begins with "-": `gateway keys retire -- -Uvl...`.
    """
    try:
        signing.retire(services().settings.signing_keys_file, kid)
    except ValueError as exc:
        raise click.ClickException(one_line(str(exc))) from exc
    click.echo(f"retired {kid}; restart the web processes")
