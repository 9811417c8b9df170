"""API clients of the OAuth 2.0 client-credentials grant: registering, listing, giving a new
secret and revoking them (the `gateway clients` commands: `register`, `listing`, `change_secret`,
`revoke_client`, each in a transaction or session of its own), and the rows the token endpoint
reads and writes (`active_client`, `store_token`) and the token its checks read (`find_token`);
the token endpoint and the token checks are `gateway.web.auth`."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session
from werkzeug.security import generate_password_hash

from gateway.platform import clock
from gateway.schemas.events import unprinted
from gateway.store.db import Database
from gateway.store.models import OAuthClient, OAuthToken
from gateway.usecases import subscriptions

#: The scopes a client may be granted (docs/api.md).
SCOPES = ("events:write", "certifications:read", "verifications:read", "admin")


@dataclass(frozen=True)
class NewClient:
    """A client just created; the secret is shown once and never stored."""

    client_id: str
    client_secret: str


class InvalidClientField(ValueError):
    """A client's `field` (name or scope) that cannot be stored as given; the message says why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def validate_scope(scope: str) -> list[str]:
    """The scopes of `scope`, or InvalidClientField naming the unknown ones."""
    scopes = list(dict.fromkeys(scope.split()))  # each once, in the order given
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown or not scopes:
        raise InvalidClientField(
            "scope",
            f"unknown scope(s) {' '.join(unknown) or '(none given)'}; "
            f"choose from {' '.join(SCOPES)}",
        )
    return scopes


def validate_client_name(name: str) -> str:
    """`name` if it can name a client: some text, at most the column's length, nothing
    unprinted (a line break would forge a row of `gateway clients list`); else
    InvalidClientField saying why."""
    limit = OAuthClient.__table__.c.name.type.length
    if not name.strip() or len(name) > limit or unprinted(name):
        raise InvalidClientField(
            "name",
            f"a client's name is 1 to {limit} characters, not blank, without control or "
            "formatting characters",
        )
    return name


def register(db: Database, name: str, scope: str, show: Callable[[NewClient], None]) -> None:
    """`create_client` in a transaction of its own, committed once `show` has shown the new
    client's secret: should it fail (its error is raised), no client is created, so none is
    left whose secret no one has."""
    with db.transaction() as session:
        client = create_client(session, name, scope)
        session.flush()  # the row refused now, if at all: not after its secret is shown
        show(client)


def create_client(session: Session, name: str, scope: str) -> NewClient:
    """Register a client with `scope`; its secret is stored only as a hash."""
    name, scopes = validate_client_name(name), validate_scope(scope)
    client = NewClient(client_id=secrets.token_hex(16), client_secret=_new_secret())
    session.add(
        OAuthClient(
            client_id=client.client_id,
            client_secret_hash=generate_password_hash(client.client_secret),
            name=name,
            scope=" ".join(scopes),
        )
    )
    return client


class ClientRevoked(LookupError):
    """The client was revoked: it has no secret to change."""


def change_secret(db: Database, client_id: str, show: Callable[[NewClient], None]) -> bool:
    """`new_secret` in a transaction of its own, committed once `show` has shown the new secret:
    should it fail (its error is raised), the client keeps its secret and tokens. False when no
    such client exists."""
    with db.transaction() as session:
        client = new_secret(session, client_id)
        if client is None:
            return False
        session.flush()
        show(client)
        return True


def new_secret(session: Session, client_id: str) -> NewClient | None:
    """Give a client a new secret (a leaked one's remedy): the old secret gets no token from
    then on and every token issued stops working at once, while the client keeps its id, scopes
    and webhook subscriptions. None when no such client exists; ClientRevoked for a revoked one.
    A token request checked against the old secret while this runs gets no token
    (`gateway.web.auth` checks the secret's hash again under the client's row lock)."""
    row = _locked(session, client_id)
    if row is None:
        return None
    if row.revoked_at is not None:
        raise ClientRevoked(client_id)
    client = NewClient(client_id=client_id, client_secret=_new_secret())
    row.client_secret_hash = generate_password_hash(client.client_secret)
    session.execute(
        update(OAuthToken)
        .where(OAuthToken.client_id == client_id, OAuthToken.revoked.is_(False))
        .values(revoked=True)
    )
    return client


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


def listing(db: Database) -> list[OAuthClient]:
    """`list_clients` read in a session of its own."""
    with db.snapshots() as session:
        return list_clients(session)


def list_clients(session: Session) -> list[OAuthClient]:
    """Every registered client, oldest first."""
    return list(session.scalars(select(OAuthClient).order_by(OAuthClient.id)))


@dataclass(frozen=True)
class Revocation:
    """What revoking a client did: when it was revoked (`already`: by an earlier revocation) and
    how many of its webhook subscriptions were deleted."""

    revoked_at: datetime
    already: bool
    subscriptions_deleted: int


def revoke_client(db: Database, client_id: str) -> Revocation | None:
    """`revoke` in a transaction of its own."""
    with db.transaction() as session:
        return revoke(session, client_id)


def revoke(session: Session, client_id: str) -> Revocation | None:
    """Revoke a client: its tokens stop working at once and its webhook subscriptions are
    deleted; None when no such client exists. Revoking it again keeps the first revocation's
    time."""
    row = _locked(session, client_id)
    if row is None:
        return None
    already = row.revoked_at is not None
    row.revoked_at = row.revoked_at or clock.now()
    return Revocation(row.revoked_at, already, subscriptions.remove_all(session, client_id))


def _locked(session: Session, client_id: str) -> OAuthClient | None:
    """The client's row, locked to the end of the transaction; None when there is none."""
    return session.scalar(
        select(OAuthClient).where(OAuthClient.client_id == client_id).with_for_update()
    )


def active_client(db: Database, client_id: str) -> OAuthClient | None:
    """The client `client_id` unless it is revoked, read in a session of its own."""
    with db.snapshots() as session:
        return session.scalar(
            select(OAuthClient).where(
                OAuthClient.client_id == client_id, OAuthClient.revoked_at.is_(None)
            )
        )


class SecretChanged(LookupError):
    """The client's secret changed, or the client was revoked, since its secret was checked."""


def store_token(
    db: Database, client: OAuthClient, token_hash: str, scope: str, expires_in: int
) -> None:
    """Store an access token (by its hash) of `client`, as its row was when its secret was
    checked, in a transaction of its own; SecretChanged, storing nothing, when the secret changed
    or the client was revoked since (`new_secret` and `revoke` hold the row's lock until they
    commit)."""
    with db.transaction() as session:
        current = session.scalar(
            select(OAuthClient.client_secret_hash)
            .where(OAuthClient.client_id == client.client_id, OAuthClient.revoked_at.is_(None))
            .with_for_update(read=True)
        )
        if current != client.client_secret_hash:
            raise SecretChanged(client.client_id)
        session.add(
            OAuthToken(
                token_hash=token_hash,
                client_id=client.client_id,
                scope=scope,
                expires_in=expires_in,
            )
        )


#: A stored token as the token checks read it: client id, scope, issue time, lifetime in
#: seconds, whether it is revoked, and when its client was revoked (None: it is not).
TokenRow = tuple[str, str, datetime, int, bool, datetime | None]

_TOKENS, _CLIENTS = OAuthToken.__table__, OAuthClient.__table__
_TOKEN_QUERY = (
    select(
        _TOKENS.c.client_id,
        _TOKENS.c.scope,
        _TOKENS.c.issued_at,
        _TOKENS.c.expires_in,
        _TOKENS.c.revoked,
        _CLIENTS.c.revoked_at,
    )
    .join(_CLIENTS, _CLIENTS.c.client_id == _TOKENS.c.client_id)
    .where(_TOKENS.c.token_hash == bindparam("token_hash"))
)


def find_token(db: Database, token_hash: str) -> TokenRow | None:
    """The stored token with `token_hash`, and its client's revocation time; None if none.

    Every authenticated request checks its token with this: one statement outside any
    transaction, with no ORM objects made (`Database.read`)."""
    rows = db.read(_TOKEN_QUERY, {"token_hash": token_hash})
    return rows[0] if rows else None
