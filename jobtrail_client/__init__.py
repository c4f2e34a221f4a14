"""jobtrail's client for services that run their own pipelines and report their jobs to jobtrail.

See ``Tracker``. Needs ``requests`` and ``opentelemetry-api``; ``google-auth`` for ID tokens and
``google-cloud-pubsub`` for the Pub/Sub transport, only when those are used.
"""

from jobtrail_client.tracker import JobHandle, Tracker
from jobtrail_client.transport import GoogleIdToken, HttpTransport, PubSubTransport, ReporterKey

__all__ = ["GoogleIdToken", "HttpTransport", "JobHandle", "PubSubTransport", "ReporterKey", "Tracker"]
