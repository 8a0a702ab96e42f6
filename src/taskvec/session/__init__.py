"""A session on disk: its layout, running statistics, the writer, metadata over a run, resuming
and reading."""
