"""``pgrunbook maintain`` (runbook script 07): VACUUM (ANALYZE) and concurrent reindexing."""
