"""The trainer service: ``Train`` fits a backbone on a stored dataset version, streams progress and
publishes a self-describing checkpoint (``python -m services.trainer``)."""
