"""Conversations: what the server records of each chat, and how users find theirs again."""
