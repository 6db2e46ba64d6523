"""The medallion warehouse: engine, schema (Alembic-owned), bulk loads and ingestion."""
