"""Bring your own pipeline: services that run elsewhere report their jobs to jobtrail.

``service`` applies creates and reports to the job store (same state machine as built-in jobs);
``api`` is its HTTP face in the API service, ``push`` its Pub/Sub face (ingest-reports topic).
"""
