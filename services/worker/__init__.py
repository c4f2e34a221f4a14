"""The pipeline worker (Cloud Run, Pub/Sub push): see engine.py."""
