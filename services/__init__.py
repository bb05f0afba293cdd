"""gRPC services around the core library: trainer and generator (and, later, the orchestrator).

Dependency direction: ``rsir`` ← ``services.common`` ← ``services.{trainer,generator}``. The core
never imports anything from here.
"""
