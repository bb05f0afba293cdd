"""One router per resource: runs, datasets, checkpoints, artifacts, health and metrics, dashboard."""
