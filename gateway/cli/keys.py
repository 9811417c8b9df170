"""`gateway keys`: the signing keys of receipts and credentials."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from gateway.cli.group import CommandGroup
from gateway.platform import signing
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
        raise click.ClickException(str(exc)) from exc
    click.echo(f"retired {kid}; restart the web processes")
