"""Create the topology of infra/topology.yaml on the Pub/Sub emulator (Terraform does it in the cloud).

Subscriptions whose ``push_to`` entry point has a URL in ``push_endpoints`` become push
subscriptions to that URL; the others are created as pull subscriptions, which tests read directly.
"""

from __future__ import annotations

import contextlib

from google.api_core.exceptions import AlreadyExists
from google.cloud import pubsub_v1  # type: ignore[attr-defined]
from google.protobuf import duration_pb2

from infra.topology import RetryPolicy, Topology, load_topology


def _duration(text: str) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=int(text.rstrip("s")))


def bootstrap(
    project: str,
    *,
    prefix: str = "",
    push_endpoints: dict[str, str] | None = None,
    topology: Topology | None = None,
    backoff: RetryPolicy | None = None,
) -> dict[str, str]:
    """Create every topic and subscription (idempotent). Returns subscription name -> full path.

    ``backoff`` replaces every retry policy: tests and the demo use seconds where production
    waits minutes; everything else comes from the topology file unchanged.
    """
    topology = topology or load_topology()
    endpoints = push_endpoints or {}
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created: dict[str, str] = {}
    try:
        for name in topology.topics:
            with contextlib.suppress(AlreadyExists):
                publisher.create_topic(name=publisher.topic_path(project, f"{prefix}{name}"))
        for name, sub in topology.subscriptions.items():
            path = subscriber.subscription_path(project, f"{prefix}{name}")
            request: dict[str, object] = {
                "name": path,
                "topic": publisher.topic_path(project, f"{prefix}{sub.topic}"),
                "ack_deadline_seconds": sub.ack_deadline_seconds,
                "message_retention_duration": _duration(sub.message_retention),
                "dead_letter_policy": {
                    "dead_letter_topic": publisher.topic_path(project, f"{prefix}{sub.dead_letter_topic}"),
                    "max_delivery_attempts": sub.max_delivery_attempts,
                },
                "retry_policy": {
                    "minimum_backoff": _duration((backoff or sub.retry_policy).minimum_backoff),
                    "maximum_backoff": _duration((backoff or sub.retry_policy).maximum_backoff),
                },
            }
            if sub.push_to and sub.push_to in endpoints:
                request["push_config"] = {"push_endpoint": endpoints[sub.push_to]}
            with contextlib.suppress(AlreadyExists):
                subscriber.create_subscription(request=request)
            created[name] = path
    finally:
        subscriber.close()
        publisher.stop()
    return created
