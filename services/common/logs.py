"""Process-wide logging set-up, called once from each service's ``__main__`` (never at import)."""

from __future__ import annotations

import logging


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    logging.getLogger("botocore").setLevel(logging.WARNING)
