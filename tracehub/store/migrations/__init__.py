"""The database migrations, run by `tracehub.store.db.migrate` at every start.

`versions/1000_baseline.py` makes the schema of the first release; later migrations follow it
(1001, 1002, ...). Each is self-contained: it writes out the DDL and the constants it needs and
imports nothing from tracehub, so replaying it always makes the same schema (a migration that
imported schema.py would change whenever schema.py did). The pre-release migrations 0001-0020
were squashed into the baseline; a database still at one of them is refused (env.py).
"""
