"""Persistence: models, engines and locks, encryption at rest, the outbox writer, the sent log."""
