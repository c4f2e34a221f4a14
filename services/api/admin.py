"""Queues: list, pause, resume (admins)."""

from __future__ import annotations

from services.api.routing import ApiBlueprint, Call
from services.control import pause_queue, resume_queue
from services.reads.queues import queue_changed, queue_list
from services.reads.views import QueueChanged, QueueList

bp = ApiBlueprint("queues", __name__)


def queue_name_schema() -> dict[str, object]:
    from infra.topology import load_topology

    names = sorted(name for name, sub in load_topology().subscriptions.items() if sub.push_to)
    return {"type": "string", "enum": names}


@bp.operation(
    "GET",
    "/api/admin/queues",
    summary="Every pausable queue and whether it is paused",
    responses={200: QueueList},
    errors=(401, 403),
)
def get_queues(call: Call) -> QueueList:
    return queue_list(call.rt, call.principal)


@bp.operation(
    "POST",
    "/api/admin/queues/<name>/pause",
    summary="Pause a queue: nothing is delivered until resumed",
    responses={200: QueueChanged},
    errors=(401, 403, 404, 503),
    path_schemas={"name": queue_name_schema()},
)
def pause(call: Call, name: str) -> QueueChanged:
    """The worker stops consuming (it nacks without work) and the subscription's push endpoint is
    detached, so Pub/Sub keeps the messages without counting deliveries toward dead-lettering."""
    call.principal.require_admin("pause queues")
    return queue_changed(call.rt, pause_queue(call.rt, name, actor=call.principal.actor))


@bp.operation(
    "POST",
    "/api/admin/queues/<name>/resume",
    summary="Resume a paused queue",
    responses={200: QueueChanged},
    errors=(401, 403, 404, 503),
    path_schemas={"name": queue_name_schema()},
)
def resume(call: Call, name: str) -> QueueChanged:
    call.principal.require_admin("resume queues")
    return queue_changed(call.rt, resume_queue(call.rt, name, actor=call.principal.actor))
