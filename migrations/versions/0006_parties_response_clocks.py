"""parties.answered_at, waiting_since, known_ref, cases.clocks_from: each reporter of a merged case keeps their own clock and reference

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 04:00:00

After `!merge` a case holds several reporters. Each is owed a response by the time they were
promised, whoever else was answered (`answered_at`, `waiting_since`), and hears under the
reference they know (`known_ref`); the case's clocks may count from an older report merged into it
(`clocks_from`) while its opening time, which threading uses, stays; a case marked urgent after
its report counts its urgent hour from then (`urgent_since`); a case escalated to the steering
members is theirs to work on from then (`steering_since`). Reporters recorded before this revision count as answered when
their case's reporter was.
"""

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('parties', schema=None) as batch_op:
        batch_op.add_column(sa.Column('answered_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('waiting_since', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('known_ref', sa.String(length=20), nullable=True))
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.add_column(sa.Column('clocks_from', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('urgent_since', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('steering_since', sa.DateTime(), nullable=True))
    # The same column type on both sides: the stored form is copied as it is.
    op.execute("UPDATE parties SET answered_at = (SELECT cases.last_response_at FROM cases WHERE cases.id = parties.case_id) "
               "WHERE role = 'reporter'")


def downgrade() -> None:
    with op.batch_alter_table('cases', schema=None) as batch_op:
        batch_op.drop_column('steering_since')
        batch_op.drop_column('urgent_since')
        batch_op.drop_column('clocks_from')
    with op.batch_alter_table('parties', schema=None) as batch_op:
        batch_op.drop_column('known_ref')
        batch_op.drop_column('waiting_since')
        batch_op.drop_column('answered_at')
