"""The one read layer: job pages, search, dead letters, audit, execution logs, summary, queues.

The API's routes and the CLI both call these functions and get typed views (services/reads/views.py)
back; the owner/admin rule is applied here, once, so a plain user's read never shows another
user's job (it answers as a missing one) whichever way it arrives.
"""
