"""Accounts, passwords, tokens and API keys."""
