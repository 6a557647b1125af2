"""The metadata store's first schema: datasets, deployments and their history, events, monitoring results,
alerts and leases.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "dataset_versions",
        sa.Column("version", sa.String(64), primary_key=True),
        sa.Column("digest", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("n_columns", sa.Integer, nullable=False),
        sa.Column("schema_json", sa.Text, nullable=False),
        sa.Column("parents_json", sa.Text, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
    )
    op.create_table(
        "deployments",
        sa.Column("model_name", sa.String(200), primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("champion", sa.String(32)),
        sa.Column("challenger", sa.String(32)),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("challenger_weight", sa.Float, nullable=False),
        sa.Column("rollout_step", sa.Integer),
        sa.Column("step_started_at", sa.DateTime(timezone=True)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
    )
    op.create_table(
        "deployment_history",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("champion", sa.String(32)),
        sa.Column("challenger", sa.String(32)),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("challenger_weight", sa.Float, nullable=False),
        sa.Column("rollout_step", sa.Integer),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.UniqueConstraint("model_name", "revision"),
    )
    op.create_index("ix_deployment_history_model_name", "deployment_history", ["model_name"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(32)),
        sa.Column("run_id", sa.String(64)),
        sa.Column("data_version", sa.String(64)),
        sa.Column("evidence_json", sa.Text, nullable=False),
    )
    op.create_index("ix_events_ts", "events", ["ts"])
    op.create_table(
        "monitoring_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(32)),
        sa.Column("window_start", sa.DateTime(timezone=True)),
        sa.Column("window_end", sa.DateTime(timezone=True)),
        sa.Column("n_rows", sa.Integer, nullable=False),
        sa.Column("dataset_drift", sa.Boolean),
        sa.Column("drift_share", sa.Float),
        sa.Column("result_json", sa.Text, nullable=False),
    )
    op.create_index("ix_monitoring_results_ts", "monitoring_results", ["ts"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(200), nullable=False),
        sa.Column("rule", sa.String(200), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_sent", sa.DateTime(timezone=True)),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("model_version", sa.String(32)),
        sa.Column("evidence_json", sa.Text, nullable=False),
    )
    op.create_index("ix_alerts_fingerprint", "alerts", ["fingerprint"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("holder", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    for table in (
        "leases",
        "alerts",
        "monitoring_results",
        "events",
        "deployment_history",
        "deployments",
        "dataset_versions",
    ):
        op.drop_table(table)
