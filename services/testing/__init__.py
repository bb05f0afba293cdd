"""A whole rsir system as real processes, and the load and fuzzing that drive it: shared by the
reliability tests (tests/reliability) and bench/reliability.py, so it lives in the package
rather than in tests/. No service imports it; it needs the dev extra (schemathesis, hypothesis,
requests) besides the orchestrator extra."""
