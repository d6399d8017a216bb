"""The server backend: PostgreSQL through an asyncpg pool, with its SQL and its numbered migrations."""
