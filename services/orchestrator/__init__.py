"""The orchestrator: a FastAPI run API and dashboard over Redis state, driving the trainer and generators."""
