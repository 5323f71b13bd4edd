"""The Dagster side of kq-pipeline: everything `kq_pipeline.definitions` assembles.

assets (API-group assets and the table catalog), checks (row-count rules), partitions (one per
cluster), sensors (inventory), schedules (fleet refresh), retention (pruning Dagster's run history),
resources (the fleet database and polling settings), dagster_storage (pooled dagster-postgres storage).
The core it drives (extract, rows, frames, db, refresh, inventory) knows nothing of Dagster.
"""
