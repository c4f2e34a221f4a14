"""CSV export of the jobs matching the table's filters (services/reads/export.py), streamed."""

from __future__ import annotations

import flask
from pydantic import RootModel

from services.api.routing import ApiBlueprint, Call
from services.reads.export import export_jobs_csv
from services.reads.queries import JobExportQuery

bp = ApiBlueprint("export", __name__)
CSV_MEDIA_TYPE = "text/csv"


class JobsCsv(RootModel[str]):
    """CSV (RFC 4180): a header line, then one line per matching job in the listing's sort order."""


@bp.operation(
    "GET",
    "/api/exports/jobs.csv",
    summary="Every job matching the filters, as CSV, streamed",
    query=JobExportQuery,
    responses={200: JobsCsv},
    errors=(400, 401, 403),
    media_type=CSV_MEDIA_TYPE,
)
def export_jobs(call: Call, query: JobExportQuery) -> flask.Response:
    """The same filters and sort as GET /api/jobs, plus search (part of a jobId or traceId). Not
    one page: every matching job, read page by page while the answer streams. A plain user's
    export holds their own jobs only."""
    lines = export_jobs_csv(call.rt, call.principal, query)
    stamp = call.rt.repo.clock().strftime("%Y%m%dT%H%M%SZ")
    return flask.Response(
        flask.stream_with_context(lines),
        mimetype=CSV_MEDIA_TYPE,
        headers={
            "Content-Disposition": f'attachment; filename="jobs-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )
