"""The installed ``rsir`` command: the core library's commands (``rsir.cli``) plus ``rsir up``, which
starts the services on this machine (``services.stack``); the core stays free of service code."""

from __future__ import annotations

import sys

from rsir.cli import main as core_main
from services.stack import add_command


def main() -> int:
    return core_main(extra=add_command)


if __name__ == "__main__":
    sys.exit(main())
