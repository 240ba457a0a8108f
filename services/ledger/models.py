"""The ledger's tables (SQLAlchemy 2). Alembic migrations in migrations/ create them."""

from datetime import datetime, timezone

from sqlalchemy import (BigInteger, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String,
                        Text, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Tenant(Base):
    __tablename__ = "tenants"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    webhook_secret: Mapped[str | None] = mapped_column(String(64), nullable=True)  # "whsec_...", made on first use


class ApiKey(Base):
    __tablename__ = "api_keys"
    key_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the key
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("tenant_id", "request_id", name="uq_jobs_tenant_request"),
                      Index("ix_jobs_queue", "queued_for", "queued_at"),
                      Index("ix_jobs_tenant_listing", "tenant_id", "created_at", "id"))
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    mode: Mapped[str] = mapped_column(String(8))
    state: Mapped[int] = mapped_column(Integer, index=True)  # avlora.v1.JobState
    params_json: Mapped[str] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    progress: Mapped[bytes] = mapped_column(LargeBinary, default=b"")  # avlora.v1.Progress
    outputs: Mapped[bytes] = mapped_column(LargeBinary, default=b"")   # avlora.v1.Outputs
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # While waiting for a worker: the stage it is queued for and since when ("" otherwise).
    queued_for: Mapped[str] = mapped_column(String(16), default="", server_default="")
    queued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    webhook_url: Mapped[str] = mapped_column(Text, default="", server_default="")  # "" : no webhook


class Upload(Base):
    """An upload://<id> and the tenant that uploaded it (only that tenant may train on it)."""
    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobEvent(Base):
    """Every event received, once (event_id is the de-duplication key), applied or refused."""
    __tablename__ = "job_events"
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(128), unique=True)
    job_id: Mapped[str] = mapped_column(String(32), index=True)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # avlora.v1.JobEvent
    applied: Mapped[bool] = mapped_column(Boolean)
    note: Mapped[str] = mapped_column(Text, default="")
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Usage(Base):
    """One row per finished job: at most one bill per job (job_id is the key)."""
    __tablename__ = "usage"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    mode: Mapped[str] = mapped_column(String(8))
    units: Mapped[int] = mapped_column(BigInteger)
    unit_price: Mapped[float] = mapped_column(Float)
    billed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WorkOutbox(Base):
    """A new job's work item until NATS accepted it: whoever finds it here publishes it (JetStream
    drops the duplicates), so a job recorded during a NATS outage runs when NATS is back."""
    __tablename__ = "work_outbox"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), primary_key=True)
    stage: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class WebhookDelivery(Base):
    """One webhook message (a job's state change), kept until delivered or given up: the outbox
    of deliveries and their record."""
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)
    message_id: Mapped[str] = mapped_column(String(128), primary_key=True)   # the webhook-id header
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id"), index=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    url: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(String(32))         # job.<state>
    state: Mapped[int] = mapped_column(Integer)           # avlora.v1.JobState announced
    payload: Mapped[str] = mapped_column(Text)            # the JSON body, fixed when the state changed
    status: Mapped[str] = mapped_column(String(16))       # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class WebhookAttempt(Base):
    __tablename__ = "webhook_attempts"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.message_id"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    status_code: Mapped[int] = mapped_column(Integer)     # 0: no response
    error: Mapped[str] = mapped_column(Text, default="")  # "" : delivered
