"""SQLAlchemy models: certifications, members, the event log (and malformed attempts), badges,
the outbox and job outcomes, badge turns, lookup records, OAuth clients and tokens, subscriptions
and their deliveries and advance notices, receipts, Credly's notifications, credential status
entries, daily runs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from gateway.platform import clock


class UTCDateTime(TypeDecorator):
    """A timestamp stored in UTC and always read back timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints the same way."""

    metadata = MetaData(naming_convention=NAMING)


class Member(Base):
    """A certified member, as the latest event describes them."""

    __tablename__ = "members"

    member_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_name: Mapped[str] = mapped_column(String(200))
    last_name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)


class Certification(Base):
    """A certification and its last stored standing (the sweep compares against it)."""

    __tablename__ = "certifications"

    certification_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    credential: Mapped[str] = mapped_column(String(32), index=True)  # the start check reads it
    member_id: Mapped[str] = mapped_column(ForeignKey("members.member_id"), index=True)
    status: Mapped[str] = mapped_column(String(16))
    standing: Mapped[dict] = mapped_column(JSONType)
    evaluated_on: Mapped[date] = mapped_column(Date)
    next_change_on: Mapped[date | None] = mapped_column(Date, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)


#: The status of an event refused only because of events dated after it (`rules.kept`: a lapse, a
#: recertification): answered and shown as rejected, but kept in its certification's history,
#: where the standing sees it in date order (docs/rules.md, *Arrival order*).
EVENT_KEPT = "kept"
#: The statuses of the events that make up a certification's history.
IN_HISTORY = ("accepted", EVENT_KEPT)


class Event(Base):
    """The append-only log of every event received, accepted or rejected, with its first answer."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    certification_id: Mapped[str] = mapped_column(String(128), index=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    body: Mapped[dict] = mapped_column(JSONType)
    body_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list] = mapped_column(JSONType, default=list)
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[dict] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    client_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_events_certification_status", "certification_id", "status"),)


class MalformedEvent(Base):
    """The latest malformed attempt at an event id no event is recorded under, for audit: it
    does not hold the id (a corrected body sent later is judged as a first arrival). `type`,
    `certification_id` and `occurred_at` as sent, when usable; `reasons`, the 422's field errors.
    Pruned after MALFORMED_EVENT_RETENTION_DAYS."""

    __tablename__ = "malformed_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    type: Mapped[str | None] = mapped_column(String(64))
    certification_id: Mapped[str | None] = mapped_column(String(128))
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    body: Mapped[dict] = mapped_column(JSONType)
    reasons: Mapped[list] = mapped_column(JSONType)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))


class Badge(Base):
    """The Credly badge of one certification period, and where its jobs left it."""

    __tablename__ = "badges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certification_id: Mapped[str] = mapped_column(
        ForeignKey("certifications.certification_id"), index=True
    )
    period_start: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    credly_badge_id: Mapped[str | None] = mapped_column(String(64), index=True)
    badge_template_id: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    #: What the standing should say besides the state (e.g. an accepted badge's e-mail is the
    #: earner's own); set by the job that last recorded Credly's answer.
    note: Mapped[str | None] = mapped_column(Text)
    #: Revoked unclaimed to be issued again to the member's new e-mail address: a later replace
    #: job issues it (set and cleared with the note that says so, never read from it).
    reissue_owed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: The issue Credly refused for good (`jobs.badges.notes.refused_request`: its address, names
    #: and template), which reconciliation does not send again; None once an answer is recorded.
    refused_request: Mapped[str | None] = mapped_column(Text)
    #: The e-mail address Credly holds for the badge, as its answer said: where the claim
    #: e-mail went (None: recorded before the gateway kept it, until reconciliation sees it).
    recipient_email: Mapped[str | None] = mapped_column(String(320))
    #: When `gateway badges reconcile` last found this badge live on Credly.
    credly_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)

    __table_args__ = (UniqueConstraint("certification_id", "period_start"),)


#: The states of an outbox item not yet done or failed.
UNFINISHED = ("pending", "running", "retrying")
#: The states after which an outbox item is never run again (a failed one may be requeued).
FINISHED = ("done", "failed")
#: The state of a failed item a later job made good: no longer listed by `gateway jobs failed`,
#: nor put back by `gateway jobs requeue`; its error is kept.
SUPERSEDED = "superseded"


class OutboxItem(Base):
    """A side effect committed with its cause, waiting to be (or having been) run as a job."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    event_pk: Mapped[int | None] = mapped_column(ForeignKey("events.id"), index=True)
    certification_id: Mapped[str | None] = mapped_column(String(128), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict] = mapped_column(JSONType, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: When a worker may next claim the item: at once when pending, after its back-off when
    #: retrying, when its lease ends when running; NULL once done or failed.
    due_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=clock.now)

    __table_args__ = (
        # By state, then end: the backlog's counts and the failed items by state, the daily prune
        # of the items done long ago by both (without it, a scan of every item kept).
        Index("ix_outbox_state_finished_at", "state", "finished_at"),
        # In the order a claim takes due items (`jobs.engine.claim`): a claim reads those it
        # takes, not every item due at the same moment (given back, requeued or resumed together).
        Index("ix_outbox_due_at_id", "due_at", "id"),
    )

    @property
    def job_id(self) -> str:
        return job_name(self.id)


def job_name(outbox_id: int) -> str:
    """How operators name an outbox item's job (`gateway jobs`)."""
    return f"outbox-{outbox_id}"


OUTCOME_SHARDS = 16


class JobOutcome(Base):
    """How many outbox items of a kind have ended in an outcome (`done`, `failed`), counted in the
    transaction that records each end: every worker's job outcomes, read by `/metrics` in one
    small table (the outbox keeps its done items, so counting them there grows with history)."""

    __tablename__ = "job_outcomes"

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    outcome: Mapped[str] = mapped_column(String(16), primary_key=True)
    #: Each end adds to one of OUTCOME_SHARDS rows drawn at random, so that concurrent ends
    #: seldom wait for one row's lock; a reading sums them.
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    total: Mapped[int] = mapped_column(BigInteger)


class BadgeTurn(Base):
    """The badge job (its outbox item) whose Credly calls for a certification are in flight, and
    the end of its lease: until it ends, or its lease does, another badge job of the
    certification waits (`jobs.badges.turn`). A row lives only while its job calls Credly."""

    __tablename__ = "badge_turns"

    certification_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    outbox_id: Mapped[int] = mapped_column(Integer)
    until: Mapped[datetime] = mapped_column(UTCDateTime)


class VerificationRecord(Base):
    """The public read model an employer's lookup answers from; only the sync job writes it."""

    __tablename__ = "verification_records"

    certification_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(401))
    credential: Mapped[str] = mapped_column(String(32))
    credential_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    certified_since: Mapped[date] = mapped_column(Date)
    valid_through: Mapped[date | None] = mapped_column(Date)
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)


class OAuthClient(Base):
    """An API client of the client-credentials grant; the secret is kept only as a hash."""

    __tablename__ = "oauth_clients"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[str] = mapped_column(String(256))
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class OAuthToken(Base):
    """An issued bearer token, stored as the SHA-256 of the token."""

    __tablename__ = "oauth_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_clients.client_id"), index=True)
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    expires_in: Mapped[int] = mapped_column(Integer)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


class CredlyNotification(Base):
    """A Credly webhook notification, kept once per Credly event id, and what came of it.

    `status`: received, refused (another organisation's, or an event holding a value the gateway
    cannot store), processed, ignored, forged (Credly does not know the event) or failed (its
    check failed for good). `occurred_at` and `event_type` become Credly's own once fetched.
    `address`: the client address of the delivery recorded (the latest one checked), by which an
    address whose notifications are found forged loses the shared checks (docs/credly.md).
    """

    __tablename__ = "credly_notifications"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(128), unique=True)
    organization_id: Mapped[str] = mapped_column(String(128))
    event_type: Mapped[str] = mapped_column(String(64))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    status: Mapped[str] = mapped_column(String(16), default="received")
    credly_badge_id: Mapped[str | None] = mapped_column(String(64), index=True)
    event: Mapped[dict | None] = mapped_column(JSONType)
    result: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (
        Index("ix_credly_notifications_address", "address", "status", "processed_at"),
        # the daily prune of the old unconfirmed ones, without reading those Credly vouched for
        Index("ix_credly_notifications_status_received_at", "status", "received_at"),
    )


class Subscription(Base):
    """An employer's webhook: where to POST status changes of the certifications it watches.

    `secret` signs every delivery (Standard Webhooks), so it is stored as given out, not hashed.
    """

    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("oauth_clients.client_id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(64))
    #: Days of advance notice of a scheduled status change; None: no advance notice.
    notice_days: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WatchedCertification(Base):
    """One certification a subscription watches (it need not be on record yet)."""

    __tablename__ = "subscription_certifications"

    subscription_id: Mapped[str] = mapped_column(
        ForeignKey("subscriptions.id", ondelete="CASCADE"), primary_key=True
    )
    certification_id: Mapped[str] = mapped_column(String(128), primary_key=True, index=True)


class DeliveryTarget(Base):
    """A place deliveries go (`directory` or a subscription id): its sequence, backfill progress."""

    __tablename__ = "delivery_targets"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    last_sequence: Mapped[int] = mapped_column(Integer, default=0)
    backfill_after: Mapped[str | None] = mapped_column(String(128))
    backfill_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)


class Delivery(Base):
    """One push of a certification's public record to a target, numbered in the target's sequence
    (`data`: the record its latest attempt carried); or one advance notice (`event_type`) whose
    body, `data`, was fixed when it was queued.

    `state`: pending, sending, retrying, delivered, superseded (a later one was delivered first, a
    record delivered showed its change, or its receiver's latest message carried that status),
    cancelled (the subscription was deleted) or failed.
    """

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    target: Mapped[str] = mapped_column(String(40))
    certification_id: Mapped[str] = mapped_column(String(128))
    sequence: Mapped[int] = mapped_column(Integer)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    event_type: Mapped[str] = mapped_column(
        String(64),
        default="certification.status_changed",
        server_default="certification.status_changed",
    )
    data: Mapped[dict | None] = mapped_column(JSONType)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    last_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("target", "sequence"),
        Index("ix_deliveries_target_certification", "target", "certification_id"),
    )


class CredentialStatusEntry(Base):
    """The Open Badges credential of one certification period: its place in the status lists.

    One index serves both lists of its `list_id` (revocation and suspension); the bits follow
    the certification's stored standing (the sync job sets them). `salt` salts the member's
    e-mail in the credential's identity hash.
    """

    __tablename__ = "credential_status_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    certification_id: Mapped[str] = mapped_column(
        ForeignKey("certifications.certification_id"), index=True
    )
    period_start: Mapped[date] = mapped_column(Date)
    credential_id: Mapped[str] = mapped_column(String(36), unique=True)
    salt: Mapped[str] = mapped_column(String(32))
    list_id: Mapped[int] = mapped_column(Integer)
    status_index: Mapped[int] = mapped_column(Integer)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    suspended: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)

    __table_args__ = (
        UniqueConstraint("certification_id", "period_start"),
        UniqueConstraint("list_id", "status_index"),
    )


class Receipt(Base):
    """A signed verification receipt that was issued: its reference (`jti`), what it said, when,
    and who asked (an API client, or else the client address). Pruned after
    RECEIPT_RETENTION_DAYS."""

    __tablename__ = "receipts"

    jti: Mapped[str] = mapped_column(String(40), primary_key=True)
    certification_id: Mapped[str] = mapped_column(String(128))
    on: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    client_id: Mapped[str | None] = mapped_column(String(64))
    client_address: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_receipts_client_issued", "client_id", "issued_at", "jti"),)


class AdvanceNotice(Base):
    """A status change a subscription was told is scheduled (`scheduled`), and whether it was
    called off since (`cancelled`) or its day came (`passed`): each is announced once."""

    __tablename__ = "advance_notices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id", ondelete="CASCADE"))
    certification_id: Mapped[str] = mapped_column(String(128), index=True)
    change_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    #: Indexed: the daily review and prune read the few still scheduled among every one told.
    state: Mapped[str] = mapped_column(String(16), default="scheduled", index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=clock.now, onupdate=clock.now)

    __table_args__ = (
        UniqueConstraint("subscription_id", "certification_id", "change_on", "status"),
    )


class DailyRun(Base):
    """A day's daily run claimed by one process of the embedded default (no Redis): the first to
    insert the row runs it, the others skip it (`jobs.cron.InProcessCron`)."""

    __tablename__ = "daily_runs"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
