"""Publishing job messages: the only place that turns a job into a Pub/Sub message."""

from __future__ import annotations

from opentelemetry.trace import SpanKind

from services.errors import InvalidInput
from services.jobs.models import Job
from services.messages import JobMessage
from services.pipelines.registry import get_pipeline
from services.runtime import Runtime
from services.telemetry import get_tracer, inject_into_attributes

tracer = get_tracer(__name__)


def publish_job(rt: Runtime, job: Job, reason: str = "start", timeout: float = 30.0) -> str:
    """Publish the job's next unit of work to its pipeline's topic; returns the message id.

    Blocks until Pub/Sub has the message, so a caller that answers 202 has really queued it.
    """
    message = JobMessage(job_id=job.job_id, pipeline=job.pipeline, trace_id=job.trace_id, reason=reason)
    work_topic = get_pipeline(job.pipeline).topic
    if work_topic is None:
        raise InvalidInput(f"pipeline {job.pipeline} runs outside jobtrail: it has no work to queue")
    topic = rt.clients.topic_path(work_topic)
    # The PRODUCER span's context rides in the attributes: the worker continues this trace.
    with tracer.start_as_current_span(
        f"publish {topic.rsplit('/', 1)[-1]}",
        kind=SpanKind.PRODUCER,
        attributes={"jobtrail.job_id": job.job_id, "messaging.system": "gcp_pubsub"},
    ):
        attributes = inject_into_attributes(message.attributes())
        future = rt.clients.publisher.publish(topic, message.encode(), **attributes)
        return str(future.result(timeout=timeout))
