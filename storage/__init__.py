"""Conversation history in SQL (SQLAlchemy + Alembic) and attachment files on disk; knows nothing of models or UI."""
