"""The read-only sql_query tool and the databases it reads (the sample, a user's CSVs and SQLite files)."""
