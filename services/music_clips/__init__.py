"""Music Clips (seed 002): runOnce, the Suno callback, the polling fallback and the job view.

config.py    the callback URL and the poll backoff (no I/O; the pipeline's steps use them)
service.py   runOnce, applying a Suno result (shared by callback and poller), the job view
callback.py  POST /api/webhooks/suno/music
poller.py    poll_music_jobs: the scheduled record-info fallback
api.py       the Flask blueprint the API service registers
"""
