"""Typed view of infra/topology.yaml, the one description of the Pub/Sub topology."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, model_validator

TOPOLOGY_FILE = Path(__file__).resolve().parent / "topology.yaml"


class RetryPolicy(BaseModel):
    minimum_backoff: str
    maximum_backoff: str


class Topic(BaseModel):
    description: str = ""


class Subscription(BaseModel):
    topic: str
    push_to: str | None = None
    ack_deadline_seconds: int = Field(ge=10, le=600)
    message_retention: str = "604800s"
    max_delivery_attempts: int = Field(ge=5, le=100)  # the range Pub/Sub accepts
    dead_letter_topic: str
    retry_policy: RetryPolicy


class Topology(BaseModel):
    topics: dict[str, Topic]
    subscriptions: dict[str, Subscription]

    @model_validator(mode="after")
    def _references_exist(self) -> Topology:
        for name, sub in self.subscriptions.items():
            for ref in (sub.topic, sub.dead_letter_topic):
                if ref not in self.topics:
                    raise ValueError(f"subscription {name} names unknown topic {ref}")
        return self

    def subscriptions_of(self, topic: str) -> dict[str, Subscription]:
        return {n: s for n, s in self.subscriptions.items() if s.topic == topic}

    def subscription_for_dead_letter(self, subscription: str) -> str:
        return self.subscriptions[subscription].dead_letter_topic


@lru_cache(maxsize=4)
def load_topology(path: str | None = None) -> Topology:
    return Topology.model_validate(yaml.safe_load(Path(path or TOPOLOGY_FILE).read_text()))
