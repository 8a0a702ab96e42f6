"""A session on disk: its layout, atomic writes, the lock, the writer and sample table, the one
builder and recorder that write it, resuming and reading."""
