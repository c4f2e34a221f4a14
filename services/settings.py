"""The one typed settings object. Nothing else in the code base reads the environment.

Every field can be set by an environment variable of the same name in upper case
(e.g. ``STALE_AFTER_SECONDS=90``). Secrets are ``SecretStr`` so they never print.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# local: a developer's machine or the local stack; test: the test suite; cloud: deployed, where
# services/deployment.py refuses development defaults at start.
Environment = Literal["local", "test", "cloud"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    # --- Where this runs ----------------------------------------------------------------------
    environment: Environment = Field(
        "local", description="Unset: cloud where Cloud Run's K_SERVICE is set, local elsewhere."
    )
    # Cloud Run sets these in every container (the service and revision names).
    k_service: str | None = None
    k_revision: str | None = None
    # Cloud Run's CPU model for this service (Terraform sets it beside cpu_idle): with "request" the
    # CPU is throttled between requests, so telemetry is exported before each response instead of by
    # background threads.
    cpu_allocation: Literal["always", "request"] = "always"
    # Cloud Run allows 10 s between SIGTERM and SIGKILL: exporting what is left must fit in it.
    telemetry_shutdown_seconds: float = Field(8.0, gt=0, le=9.5)

    # --- Google Cloud -----------------------------------------------------------------------
    google_cloud_project: str = Field("jobtrail-local", description="Project id (emulators accept any).")
    region: str = "europe-west1"
    # Set by the emulators' env-init; the Google clients read these same variables themselves.
    firestore_emulator_host: str | None = None
    pubsub_emulator_host: str | None = None
    firestore_database: str = "(default)"
    # Longest one Firestore call may take, retries included, before its caller hears that Firestore
    # is unavailable (the API answers 503 STORE_UNAVAILABLE). The library's own defaults retry for
    # 60 to 300 s, so a request would hang that long during an outage.
    firestore_call_timeout_seconds: float = Field(20.0, gt=0)
    # Prefix for every collection, so test runs and environments never share documents.
    collection_prefix: str = ""

    # --- Pub/Sub topology ---------------------------------------------------------------------
    topology_file: str | None = Field(None, description="Defaults to infra/topology.yaml in the package.")
    topic_prefix: str = ""

    # --- Jobs -------------------------------------------------------------------------------
    stale_after_seconds: int = Field(
        60,
        description="How late an expected sign of life (a scheduled poll, a redelivery, the end of a "
        "worker step) may be before the job reads as stale, i.e. stuck.",
    )
    retention_days: int = Field(30, description="Finished jobs and events expire (Firestore TTL) after this.")
    sweep_batch_size: int = 200

    # --- Worker guardrails --------------------------------------------------------------------
    # A step that runs longer is abandoned and its attempt recorded as `timeout`. Below the delivery
    # deadline, so the attempt closes its own record before the push is answered; the same value
    # terraform/entrypoints.yaml deploys (HANDLER_TIMEOUT_SECONDS) and runbooks/dlq.md cites.
    handler_timeout_seconds: float = 50.0
    # How often a running step looks for a cancel (one job read each time): a cancel stops it
    # within this, mid-step, well inside seed 003's "stop running work".
    cancel_check_seconds: float = Field(1.0, gt=0)
    # Below the worker subscriptions' ack deadline (infra/topology.yaml: 60 s), so Pub/Sub always
    # hears an answer before it gives up on a push.
    delivery_deadline_seconds: float = 55.0
    worker_max_concurrency: int = 8
    paused_nack_delay_seconds: float = 10.0
    # The worker's first Firestore read doubles as its health check: unreachable within this -> nack.
    dependency_timeout_seconds: float = 5.0
    breaker_fail_max: int = 5
    breaker_reset_seconds: float = 30.0
    external_timeout_seconds: float = 10.0

    # --- Intake -------------------------------------------------------------------------------
    webhook_hmac_secret: SecretStr = SecretStr("dev-webhook-secret")
    max_body_bytes: int = 64 * 1024
    # A duplicate delivery republishes a job never taken by the worker only once the job is older
    # than this: by then the first request has published (its publish gives up after 30 s) or died.
    intake_republish_after_seconds: float = Field(45.0, gt=0)

    # --- External services (fakes on loopback locally) ----------------------------------------
    video_source_url: str = "http://127.0.0.1:8090/video"
    instagram_url: str = "http://127.0.0.1:8090/instagram"
    suno_api_url: str = "http://127.0.0.1:8090/suno"
    suno_api_key: SecretStr = SecretStr("dev-suno-key")
    public_base_url: str | None = Field(None, description="Where Suno sends callbacks; unset = 400.")
    suno_callback_token: SecretStr = SecretStr("dev-callback-token")
    suno_poll_interval_seconds: float = 15.0
    processor_url: str = "http://127.0.0.1:8090/processor"
    suno_model: str = Field("V4_5", description="sunoapi.org model name sent with every generate call.")
    # In-call retries stay few and short: Pub/Sub redelivery is the main retry loop.
    external_max_attempts: int = Field(3, ge=1)
    external_backoff_initial_seconds: float = 0.5
    external_backoff_max_seconds: float = 5.0
    # A Retry-After longer than this is not slept through: the error goes up for a later redelivery.
    external_retry_after_max_seconds: float = 30.0

    # --- API and auth -------------------------------------------------------------------------
    # HS256 keys shorter than the 32-byte hash are refused (RFC 7518 §3.2), the dev default included.
    jwt_secret: SecretStr | None = SecretStr("dev-jwt-secret-for-local-runs-only-0001")
    jwks_url: str | None = None
    jwt_audience: str | None = None
    api_key_hashes: dict[str, str] = Field(
        default_factory=dict, description="sha256 hex of an API key -> principal name (role admin)."
    )
    # Identity-Aware Proxy in front of the API: the audience of its signed header
    # (/projects/NUMBER/global/backendServices/ID, or /projects/NUMBER/locations/REGION/services/NAME
    # for IAP on Cloud Run). Unset: the header is ignored and only bearer JWTs and API keys sign in.
    iap_audience: str | None = None
    iap_jwks_url: str = "https://www.gstatic.com/iap/verify/public_key-jwk"
    # People IAP signs in who are admins here (case-insensitive); everyone else IAP admits is a user.
    iap_admin_emails: list[str] = Field(default_factory=list)
    # ... or who are members of this Google group (its email), asked of the Cloud Identity Groups
    # API (services/auth/groups.py). Unset or empty: the email list alone makes admins.
    iap_admin_group: str | None = None
    cloud_identity_url: str = "https://cloudidentity.googleapis.com"
    # How long an answer about one person's membership is kept (a removal takes effect within it).
    iap_admin_group_cache_seconds: float = Field(300.0, gt=0, le=3600)
    # One-time login codes (the local stack's sign-in link): how long a code may wait to be used,
    # and how long the session token it is traded for lasts.
    login_code_seconds: float = Field(300.0, gt=0, le=3600)
    login_session_seconds: int = Field(8 * 3600, ge=60, le=7 * 86400)

    # --- Ingest (services/ingest: pipelines that run elsewhere report their jobs) ------------------
    # Reporting services are named in the pipeline declarations (reporters:); these say who is who.
    ingest_api_key_hashes: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 hex of a reporter key (X-Reporter-Key) -> reporting service.",
    )
    ingest_service_accounts: dict[str, str] = Field(
        default_factory=dict,
        description="Service account email -> reporting service, for Google-signed ID tokens.",
    )
    # The audience a reporting service mints its ID tokens for (the ingest URL); unset = ID tokens
    # are refused and only reporter keys work.
    ingest_audience: str | None = None
    google_id_token_certs_url: str = "https://www.googleapis.com/oauth2/v3/certs"  # noqa: S105 (public keys)

    # --- Telemetry ----------------------------------------------------------------------------
    trace_exporter: Literal["none", "console", "memory", "gcp"] = "none"
    metrics_exporter: Literal["none", "prometheus", "gcp"] = "prometheus"
    metrics_export_interval_seconds: float = 60.0
    log_level: str = "INFO"

    # --- Cost rates ---------------------------------------------------------------------------
    cost_per_compute_second: float = 0.000024
    cost_per_suno_credit: float = 0.01
    cost_per_gb_egress: float = 0.12

    # --- Alerting -----------------------------------------------------------------------------
    # The chat channels the deployment configured (Terraform): each one's secrets must then be there.
    alert_channels: list[Literal["telegram", "slack"]] = Field(default_factory=list)
    telegram_api_url: str = "https://api.telegram.org"
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    slack_webhook_url: SecretStr | None = None
    alert_relay_token: SecretStr = SecretStr("dev-relay-token")
    console_base_url: str = "https://console.cloud.google.com"
    # Public URL of the API service (job pages, dashboard); alert messages link jobs to it.
    api_base_url: str | None = None
    alert_max_attempts: int = Field(5, ge=1)
    alert_backoff_initial_seconds: float = 1.0
    alert_backoff_max_seconds: float = 16.0
    # A chat API asking for a longer pause than this is not waited for: the channel reports a
    # failure, its claim is released, and the next notification of the incident delivers it.
    alert_retry_after_max_seconds: float = 30.0
    # Retries stop before this much time has passed, so a slow chat API never runs the relay past
    # its request timeout.
    alert_delivery_budget_seconds: float = 45.0

    # --- Music Clips --------------------------------------------------------------------------
    # Polls of a pending Suno task back off from suno_poll_interval_seconds, doubling up to this.
    suno_poll_max_interval_seconds: float = 120.0
    # What one generate costs on the account's Suno price list: runOnce refuses (402) below it,
    # and each generation adds it to the job's cost at cost_per_suno_credit.
    suno_credits_per_generation: int = Field(12, ge=0)
    # runOnce answers within 2 s whatever Suno does (seed 002): its credit check gets this budget,
    # one attempt, and its answer (or "could not tell") is reused for suno_credit_cache_seconds.
    suno_credit_check_timeout_seconds: float = Field(0.5, gt=0)
    suno_credit_cache_seconds: float = Field(30.0, ge=0)
    # A generate whose answer was lost may still have started a task, which then calls back naming
    # the job and attempt: a redelivery waits this long for that before asking Suno again. Below the
    # ~150 s in which the music subscription's five deliveries (10 s backoff, doubling) run out.
    suno_lost_answer_wait_seconds: float = Field(60.0, ge=0)

    # --- CLI (jobtrail) -----------------------------------------------------------------------
    # Unset: the CLI calls the services directly (the emulators, via FIRESTORE/PUBSUB_EMULATOR_HOST).
    jobtrail_api_url: str | None = Field(None, description="A deployed API for the CLI to call.")
    jobtrail_token: SecretStr | None = Field(None, description="The CLI's bearer JWT for that API.")
    jobtrail_api_key: SecretStr | None = Field(None, description="Or the CLI's API key for it.")

    # --- A job's log lines (GET /api/jobs/{jobId}/logs/stream, services/reads/job_logs.py) -------
    # "files": the JSON log files of the local stack in job_log_dir; "cloud": Cloud Logging, by
    # labels.jobId (the API's account needs roles/logging.viewer); "none": the page links out only.
    job_log_source: Literal["none", "files", "cloud"] = "none"
    job_log_dir: str | None = None
    # How often a followed job's logs are read again. Cloud Logging's entries.list allows 60 reads
    # a minute per project, so the cloud source polls slower (docs/decisions/0011).
    job_log_poll_seconds: float = Field(0.5, gt=0)
    cloud_log_poll_seconds: float = Field(5.0, ge=1)
    # A job's log stream ends this long after the job finished and no line came.
    job_log_linger_seconds: float = Field(5.0, ge=0)
    job_log_max_streams: int = Field(20, ge=1)

    # --- Live stream (GET /api/stream, services/api/stream.py) ----------------------------------
    # Comments this often keep proxies and load balancers from closing an idle stream.
    sse_heartbeat_seconds: float = Field(15.0, gt=0)
    # Last-Event-ID replay (read from Firestore, so on any instance): at most this many changed
    # jobs, from at most this far back; beyond either the browser gets a "reset" (refetch).
    sse_replay_events: int = Field(1000, ge=1)
    sse_replay_seconds: float = Field(600.0, gt=0)
    # Batches (feed ticks) a client may lag behind before it is dropped (it reconnects and replays).
    sse_client_queue_size: int = Field(256, ge=1)
    # The change feed (services/api/change_feed.py): how often it reads while nothing changes, and
    # after a read that found changes (one write per client per batch, not per change).
    sse_poll_seconds: float = Field(0.04, gt=0, le=1)
    sse_batch_seconds: float = Field(0.1, gt=0, le=1)
    # After this long without a change the feed reads less often: an empty read is billed as one
    # read, so an idle instance holding streams costs 2 reads a second instead of 25. (So the
    # quick poll above costs only while things change.)
    sse_idle_after_seconds: float = Field(10.0, ge=0)
    sse_idle_poll_seconds: float = Field(0.5, gt=0, le=5)
    # How late a commit may land behind its own updatedAt (the writer's clock when it planned the
    # change); the feed sweeps that slice once, every sse_sweep_seconds, for changes the tail passed.
    sse_commit_lag_seconds: float = Field(2.0, gt=0)
    # The tail re-reads a hold-back behind the clock, adapted to the flights (commit time minus
    # planned updatedAt) it sees, so most late commits are sent at once rather than by the sweep:
    # never less than the floor (a cloud commit's usual flight), never more than the ceiling
    # (each tick re-reads that much of the recent changes).
    sse_holdback_floor_seconds: float = Field(0.1, ge=0)
    sse_holdback_ceiling_seconds: float = Field(1.0, ge=0)
    sse_sweep_seconds: float = Field(1.0, gt=0)
    # Streams one instance holds; beyond it 503.
    sse_max_streams: int = Field(1000, ge=1)
    # Life of a one-time stream ticket (POST /api/stream/tickets): only long enough to open a stream.
    sse_ticket_seconds: float = Field(30.0, gt=0, le=300)
    # functions-framework's own THREADS variable: its gthread pool (default 4 per CPU). Every open
    # stream holds one of those threads, so streams are also capped at threads - reserved.
    threads: int | None = Field(None, ge=1)
    sse_reserved_threads: int = Field(4, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _environment_from_platform(cls, data: object) -> object:
        """Cloud Run (K_SERVICE set) means cloud unless ENVIRONMENT says otherwise."""
        if isinstance(data, dict) and not data.get("environment"):
            return {**data, "environment": "cloud" if data.get("k_service") else "local"}
        return data

    @model_validator(mode="after")
    def _holdback_bounds_in_order(self) -> Settings:
        if self.sse_holdback_ceiling_seconds < self.sse_holdback_floor_seconds:
            raise ValueError(
                "SSE_HOLDBACK_CEILING_SECONDS must be at least SSE_HOLDBACK_FLOOR_SECONDS "
                f"({self.sse_holdback_ceiling_seconds} < {self.sse_holdback_floor_seconds})"
            )
        return self


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this instance, read once."""
    return Settings()
