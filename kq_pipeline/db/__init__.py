"""The PostgreSQL layer: where the database is (embedded or KQ_DATABASE_URL), its DDL, and the
atomic per-(cluster, table) snapshot loader."""
