"""Who is calling, and what that lets them see and do."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.errors import Forbidden, JobNotFound
from services.jobs.models import Job


class Role(StrEnum):
    USER = "user"
    ADMIN = "admin"


class PrincipalKind(StrEnum):
    USER = "user"  # a person with a JWT
    MACHINE = "machine"  # a service with an API key


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role
    kind: PrincipalKind = PrincipalKind.USER

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    @property
    def actor(self) -> str:
        """How audit records and job events name this principal."""
        return f"{self.kind.value}:{self.subject}"

    def can_see(self, job: Job) -> bool:
        return self.is_admin or job.user_id == self.subject

    def require_admin(self, what: str) -> None:
        if not self.is_admin:
            raise Forbidden(f"only admins may {what}")


def visible(principal: Principal, job: Job) -> Job:
    """The job, if ``principal`` may see it; otherwise the very error a missing job gives, so an
    answer never tells whether someone else's job exists."""
    if not principal.can_see(job):
        raise JobNotFound(f"Job {job.job_id} not found")
    return job
