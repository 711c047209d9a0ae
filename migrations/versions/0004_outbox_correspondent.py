"""outbox.correspondent: the canonical address an automatic answer counts against

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 10:00:00

The acknowledgement rate limit counts per correspondent (lower case, +tag removed), not per exact
address. Acknowledgements written from now on record it (sealed like the recipient: AES-SIV when
encryption at rest is on), as do the alerts that a limit tripped. Rows written before carry none:
they are not counted, which for the first window after the upgrade allows at most one more
window's worth of acknowledgements to a correspondent (the migration cannot read sealed
recipients, so it does not backfill).
"""

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('correspondent', sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_correspondent'), ['correspondent'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_outbox_correspondent'))
        batch_op.drop_column('correspondent')
