"""Alert relay: Cloud Monitoring webhook notifications -> Telegram and Slack.

``models`` is the incident payload, ``message`` turns an incident into a readable message with
links, ``channels`` delivers it (retries with backoff, honours rate limits), ``relay`` ties them
together with per-channel deduplication, and ``http`` is what the entry point calls.
"""
