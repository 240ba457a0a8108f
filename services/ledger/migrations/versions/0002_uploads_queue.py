"""uploads owned by tenants; the queue a job waits in; the tenant listing index

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant_id", sa.String(64), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("queued_for", sa.String(16), nullable=False, server_default=""))
        batch.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_jobs_queue", "jobs", ["queued_for", "queued_at"])
    op.create_index("ix_jobs_tenant_listing", "jobs", ["tenant_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_listing", "jobs")
    op.drop_index("ix_jobs_queue", "jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queued_at")
        batch.drop_column("queued_for")
    op.drop_table("uploads")
