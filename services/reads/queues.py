"""Reads of the pausable queues."""

from __future__ import annotations

from services.auth.principal import Principal
from services.control import list_queues, worker_queues
from services.jobs.models import QueueState
from services.reads.views import QueueChanged, QueueList, QueueView
from services.runtime import Runtime


def queue_list(rt: Runtime, principal: Principal) -> QueueList:
    principal.require_admin("list queues")
    return QueueList(queues=[QueueView.of(state, topic) for state, topic in list_queues(rt)])


def queue_changed(rt: Runtime, state: QueueState) -> QueueChanged:
    return QueueChanged.model_validate(QueueView.of(state, worker_queues(rt)[state.name]).model_dump())
