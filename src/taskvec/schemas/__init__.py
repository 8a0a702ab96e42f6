"""What the flows write and read back, one typed model per file: a session's metadata.json
(`session.py`), an evaluation's metrics.json (`metrics.py`) and patching.json (`patching.py`).

Writers build the model and save `dump(model)`; readers validate the file. Fields a previous
release did not write have defaults, and keys this release does not know are kept (`extra`), so
old and newer files both read. No torch here.
"""
