"""Orchestration: job store, process registry, Celery app and queues, workers."""
