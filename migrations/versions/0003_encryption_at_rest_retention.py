"""encryption at rest (sealed columns become text), database facts, purge marker

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 10:20:00

Sealed values are longer than the plain ones (nonce, tag, base64), so the columns that may hold
them lose their length limits.
"""

import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

# (table, column, old type, nullable)
WIDENED = [
    ("cases", "title", sa.String(length=300), False),
    ("parties", "address", sa.String(length=320), False),
    ("parties", "name", sa.String(length=200), True),
    ("inbound_messages", "message_id", sa.String(length=998), True),
    ("inbound_messages", "sender", sa.String(length=320), True),
    ("attachments", "filename", sa.String(length=255), True),
    ("outbox", "recipient", sa.String(length=320), False),
    ("decisions", "target_address", sa.String(length=320), True),
    ("sanctions", "target_address", sa.String(length=320), False),
]


def upgrade() -> None:
    op.create_table('database_meta',
    sa.Column('name', sa.String(length=40), nullable=False),
    sa.Column('value', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_database_meta'))
    )
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('purged_at', sa.DateTime(), nullable=True))
    for table, column, old, nullable in WIDENED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=old, type_=sa.Text(), existing_nullable=nullable)


def downgrade() -> None:
    for table, column, old, nullable in reversed(WIDENED):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.Text(), type_=old, existing_nullable=nullable)
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('purged_at')
    op.drop_table('database_meta')
