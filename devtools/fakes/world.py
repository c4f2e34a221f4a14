"""Fakes of the outside world on loopback: the video source, the processor, Instagram and Suno.

One Flask app serves all four under ``/video``, ``/processor``, ``/instagram`` and ``/suno``, in the
wire formats the clients in ``services/external`` speak (Suno's follows sunoapi.org). Each
service's faults can be changed while it runs (``POST /_control``) and ``GET /_stats`` counts what
happened. Randomness is seeded, so a test sees the same faults on every run.

    python -m devtools.fakes.world --port 8090     # the local stack
    with FakeWorld() as world: ...                 # tests: a free port on 127.0.0.1

Faults, per service (``FakeWorldConfig.video`` etc.), checked in this order on every request:
``latency_ms`` (always), ``permanent_failure`` (400), ``fail_next_n`` (503), ``rate_limit_next_n``
(429 with Retry-After), ``failure_rate`` (503), then the real answer, which ``lose_response_next_n``
delays past any sane client timeout *after* the work is done (a lost response). Video URLs that
contain "poison" make the source crash (500): a message that can never succeed, until a test
"fixes the source" with ``configure(video={"poison": False})`` and replays it. Video URLs that
contain "slow-<n>ms" take n ms (at most 30 s) to download: a step long enough to cancel mid-way.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import click
import requests
from flask import Flask, Response, jsonify, request
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from devtools.local.serve import BackgroundServer
from services.settings import Settings

log = logging.getLogger(__name__)

_EXTENSION = "fake_world"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_CALLBACK_TIMEOUT_SECONDS = 5.0
ServiceName = Literal["video", "processor", "instagram", "suno"]


class ServiceFaults(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    latency_ms: int = Field(0, ge=0)
    failure_rate: float = Field(0.0, ge=0.0, le=1.0, description="Share of requests answered 503.")
    fail_next_n: int = Field(0, ge=0, description="The next n requests are answered 503.")
    permanent_failure: bool = Field(False, description="Every request is answered 400.")
    rate_limit_next_n: int = Field(0, ge=0, description="The next n requests are answered 429.")
    retry_after_s: int = Field(1, ge=0, description="The Retry-After sent with a 429.")
    lose_response_next_n: int = Field(
        0, ge=0, description="The next n requests do their work, then stall for lost_response_stall_ms."
    )
    lost_response_stall_ms: int = Field(2000, ge=0)
    poison: bool = Field(True, description="Video URLs containing 'poison' crash the source (500).")


class SunoFaults(ServiceFaults):
    credits: int = Field(100, ge=0, description="Each generation costs one; at 0 Suno answers code 429.")
    api_key: SecretStr | None = Field(
        None, description="If set, any other bearer token gets a 401 that echoes it, as careless APIs do."
    )
    callbacks_enabled: bool = True
    callback_delay_s: float = Field(0.05, ge=0.0, description="From generate to the task's outcome.")
    result: Literal["success", "fail", "never"] = "success"
    duplicate_callbacks: bool = Field(False, description="Send every callback twice.")
    intermediate_callbacks: bool = Field(False, description="Send text and first callbacks before complete.")


class FakeWorldConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    seed: int = 0
    video: ServiceFaults = Field(default_factory=ServiceFaults)
    processor: ServiceFaults = Field(default_factory=ServiceFaults)
    instagram: ServiceFaults = Field(default_factory=ServiceFaults)
    suno: SunoFaults = Field(default_factory=SunoFaults)


def _merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in changes.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


_SLOW_DOWNLOAD = re.compile(r"slow-(\d+)ms")
_SLOWEST_DOWNLOAD_MS = 30_000


def _stable_int(*parts: str) -> int:
    return int(hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:8], 16)


@dataclass
class _Fault:
    latency: float = 0.0
    answer: tuple[int, str] | None = None
    retry_after: int | None = None
    stall: float = 0.0


@dataclass
class _SunoTask:
    task_id: str
    prompt: str
    title: str
    callback_url: str
    audio_base: str
    faults: SunoFaults
    status: str = "PENDING"
    error: str | None = None
    callbacks_sent: int = 0
    created: float = field(default_factory=time.time)

    def tracks(self) -> list[dict[str, Any]]:
        return [
            {
                "id": f"{self.task_id}-{n}",
                "audio_url": f"{self.audio_base}/suno/audio/{self.task_id}-{n}.mp3",
                "stream_audio_url": f"{self.audio_base}/suno/audio/{self.task_id}-{n}.mp3",
                "image_url": f"{self.audio_base}/suno/audio/{self.task_id}-{n}.jpeg",
                "prompt": self.prompt,
                "model_name": "chirp-fake",
                "title": self.title,
                "tags": "fake",
                "createTime": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.created)),
                "duration": 120.0 + n,
            }
            for n in (1, 2)
        ]


def _camel_track(track: Mapping[str, Any]) -> dict[str, Any]:
    names = {
        "audio_url": "audioUrl",
        "stream_audio_url": "streamAudioUrl",
        "image_url": "imageUrl",
        "model_name": "modelName",
    }
    return {names.get(k, k): v for k, v in track.items()}


class _World:
    """The fakes' shared state. Every public method is safe to call from any thread."""

    def __init__(self, config: FakeWorldConfig) -> None:
        self._initial = config.model_copy(deep=True)
        self._lock = threading.Lock()
        self._timers: set[threading.Timer] = set()
        self._closed = False
        self._install(config.model_copy(deep=True))

    def _install(self, config: FakeWorldConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._calls: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._downloads: Counter[str] = Counter()
        self._publishes: Counter[str] = Counter()
        self._publish_replays: Counter[str] = Counter()
        self._published: dict[str, dict[str, str]] = {}
        self._tasks: dict[str, _SunoTask] = {}
        self._callbacks: Counter[str] = Counter()
        self._callback_failures: Counter[str] = Counter()  # "HTTP 404", "ReadTimeout"...

    # --- control --------------------------------------------------------------------------

    def configure(self, changes: Mapping[str, Any]) -> FakeWorldConfig:
        """Merge ``changes`` (nested per service) into the config; ``ValidationError`` if invalid."""
        with self._lock:
            new = FakeWorldConfig.model_validate(_merged(self.config.model_dump(), changes))
            if new.seed != self.config.seed:
                self._rng = random.Random(new.seed)
            self.config = new
            return new.model_copy(deep=True)

    def current_config(self) -> FakeWorldConfig:
        with self._lock:
            return self.config.model_copy(deep=True)

    def reset(self) -> None:
        """Back to the config the world started with, every counter at zero, no pending task."""
        with self._lock:
            self._cancel_timers()
            self._install(self._initial.model_copy(deep=True))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._cancel_timers()

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "calls": dict(self._calls),
                "failures_injected": dict(self._injected),
                "max_in_flight": dict(self._max_in_flight),
                "downloads": dict(self._downloads),
                "publishes": dict(self._publishes),
                "publish_replays": dict(self._publish_replays),
                "suno_tasks": {
                    t.task_id: {
                        "status": t.status,
                        "callbacks_sent": t.callbacks_sent,
                        # Which job attempt asked (the callback URL names it): one task per attempt.
                        "job_attempt": _job_attempt(t.callback_url),
                    }
                    for t in self._tasks.values()
                },
                "callbacks": dict(self._callbacks),
                "callback_failures": dict(self._callback_failures),
            }

    # --- faults ---------------------------------------------------------------------------

    def begin(self, service: ServiceName, endpoint: str) -> _Fault:
        with self._lock:
            self._calls[endpoint] += 1
            self._in_flight[endpoint] += 1
            self._max_in_flight[endpoint] = max(self._max_in_flight[endpoint], self._in_flight[endpoint])
            faults: ServiceFaults = getattr(self.config, service)
            # Drawn on every call so the sequence does not shift when other faults are switched.
            roll = self._rng.random()
            fault = _Fault(latency=faults.latency_ms / 1000)
            if faults.permanent_failure:
                fault.answer = (400, f"{service} rejects every request (permanent_failure)")
            elif faults.fail_next_n:
                faults.fail_next_n -= 1
                fault.answer = (503, f"{service} is unavailable (fail_next_n)")
            elif faults.rate_limit_next_n:
                faults.rate_limit_next_n -= 1
                fault.answer = (429, f"{service} is rate limiting (rate_limit_next_n)")
                fault.retry_after = faults.retry_after_s
            elif roll < faults.failure_rate:
                fault.answer = (503, f"{service} is unavailable (failure_rate)")
            elif faults.lose_response_next_n:
                faults.lose_response_next_n -= 1
                fault.stall = faults.lost_response_stall_ms / 1000
            if fault.answer or fault.stall:
                self._injected[endpoint] += 1
            return fault

    def end(self, endpoint: str) -> None:
        with self._lock:
            self._in_flight[endpoint] -= 1

    # --- video source and processor -------------------------------------------------------

    def record_download(self, job_id: str) -> None:
        with self._lock:
            self._downloads[job_id] += 1

    # --- Instagram ------------------------------------------------------------------------

    def publish(self, key: str | None, job_id: str) -> dict[str, str]:
        with self._lock:
            if key is not None and key in self._published:
                self._publish_replays[job_id] += 1
                return self._published[key]
            number = sum(self._publishes.values()) + 1
            media = {
                "media_container_id": f"1789{number:011d}",
                "permalink": f"https://www.instagram.com/p/FAKE{number:06d}/",
            }
            self._publishes[job_id] += 1
            if key is not None:
                self._published[key] = media
            return media

    # --- Suno -----------------------------------------------------------------------------

    def suno_faults(self) -> SunoFaults:
        with self._lock:
            return self.config.suno.model_copy(deep=True)

    def spend_credit(self) -> bool:
        with self._lock:
            if self.config.suno.credits <= 0:
                return False
            self.config.suno.credits -= 1
            return True

    def create_task(self, *, prompt: str, title: str, callback_url: str, audio_base: str) -> _SunoTask:
        with self._lock:
            task = _SunoTask(
                task_id=f"fake-{self.config.seed}-{len(self._tasks) + 1:05d}",
                prompt=prompt,
                title=title,
                callback_url=callback_url,
                audio_base=audio_base,
                faults=self.config.suno.model_copy(deep=True),
            )
            self._tasks[task.task_id] = task
            if task.faults.result != "never" and not self._closed:
                timer = threading.Timer(task.faults.callback_delay_s, self.finish_task, args=(task,))
                timer.daemon = True
                self._timers.add(timer)
                timer.start()
            return task

    def task(self, task_id: str) -> _SunoTask | None:
        with self._lock:
            return self._tasks.get(task_id)

    def finish_task(self, task: _SunoTask) -> None:
        with self._lock:
            self._timers = {t for t in self._timers if t is not threading.current_thread()}
            if self._closed:
                return
            if task.faults.result == "success":
                task.status = "SUCCESS"
            else:
                task.status = "GENERATE_AUDIO_FAILED"
                task.error = "Audio generation failed."
        if task.faults.callbacks_enabled:
            for body in self._callback_bodies(task):
                for _ in range(2 if task.faults.duplicate_callbacks else 1):
                    self._deliver(task, body)

    @staticmethod
    def _callback_bodies(task: _SunoTask) -> list[dict[str, Any]]:
        if task.status != "SUCCESS":
            error = {"callbackType": "error", "task_id": task.task_id, "data": None}
            return [{"code": 501, "msg": task.error, "data": error}]
        tracks = task.tracks()
        bodies = []
        if task.faults.intermediate_callbacks:
            bodies += [
                {"code": 200, "msg": "Text generation completed successfully.",
                 "data": {"callbackType": "text", "task_id": task.task_id, "data": []}},
                {"code": 200, "msg": "First track generated successfully.",
                 "data": {"callbackType": "first", "task_id": task.task_id, "data": tracks[:1]}},
            ]  # fmt: skip
        complete = {"callbackType": "complete", "task_id": task.task_id, "data": tracks}
        return [*bodies, {"code": 200, "msg": "All generated successfully.", "data": complete}]

    def _deliver(self, task: _SunoTask, body: dict[str, Any]) -> None:
        # Only loopback: a fake must never post to the internet whatever URL it was handed.
        if urlsplit(task.callback_url).hostname not in _LOOPBACK_HOSTS:
            with self._lock:
                self._callbacks["refused"] += 1
            return
        failure = None
        try:
            answer = requests.post(task.callback_url, json=body, timeout=_CALLBACK_TIMEOUT_SECONDS)
            if not answer.ok:
                failure = f"HTTP {answer.status_code}"
        except requests.RequestException as exc:
            failure = type(exc).__name__
        with self._lock:
            self._callbacks["failed" if failure else "sent"] += 1
            if failure:
                self._callback_failures[failure] += 1
            else:
                task.callbacks_sent += 1


def _job_attempt(callback_url: str) -> str | None:
    query = parse_qs(urlsplit(callback_url).query)
    job, attempt = query.get("jobId", [None])[0], query.get("attempt", [None])[0]
    return f"{job}#{attempt}" if job and attempt else None


def _answer(status: int, message: str, *, code: int | None = None) -> tuple[Response, int]:
    # One error shape for all four: sunoapi.org's {code, msg, data}.
    return jsonify({"code": code or status, "msg": message, "data": None}), status


def _json_body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _required(body: Mapping[str, Any], *names: str) -> str | None:
    """The name of the first missing or non-string field, if any."""
    return next((n for n in names if not isinstance(body.get(n), str) or not body[n]), None)


def create_fake_world(config: FakeWorldConfig | None = None) -> Flask:
    """The Flask app serving the four fakes and the control API; its state in ``app.extensions``."""
    app = Flask(__name__)
    world = _World(config or FakeWorldConfig())
    app.extensions[_EXTENSION] = world

    def route(rule: str, service: ServiceName, endpoint: str, methods: list[str]) -> Callable[..., Any]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            def view(**kwargs: Any) -> Any:
                fault = world.begin(service, endpoint)
                try:
                    if fault.latency:
                        time.sleep(fault.latency)
                    if fault.answer:
                        status, message = fault.answer
                        # sunoapi.org's rate limit is its code 430; its 429 means "no credits".
                        code = 430 if service == "suno" and status == 429 else None
                        response, status = _answer(status, message, code=code)
                        if fault.retry_after is not None:
                            response.headers["Retry-After"] = str(fault.retry_after)
                        return response, status
                    result = handler(**kwargs)
                    if fault.stall:
                        time.sleep(fault.stall)
                    return result
                finally:
                    world.end(endpoint)

            app.add_url_rule(rule, endpoint, view, methods=methods)
            return handler

        return register

    @route("/video/download", "video", "video.download", ["POST"])
    def download() -> Any:
        body = _json_body()
        if missing := _required(body, "video_url", "job_id"):
            return _answer(400, f"{missing} is required")
        video_url, job_id = body["video_url"], body["job_id"]
        if "poison" in video_url and world.current_config().video.poison:
            return _answer(500, "the source crashed while reading this video")
        if not video_url.startswith(("http://", "https://")):
            return _answer(400, "video_url must be an http(s) URL")
        if slow := _SLOW_DOWNLOAD.search(video_url):
            time.sleep(min(int(slow.group(1)), _SLOWEST_DOWNLOAD_MS) / 1000)
        world.record_download(job_id)
        return jsonify(
            location=f"gs://jobtrail-fake/sources/{job_id}.mp4",
            size_bytes=1_000_000 + _stable_int(video_url) % 50_000_000,
        )

    @route("/processor/process", "processor", "processor.process", ["POST"])
    def process() -> Any:
        body = _json_body()
        if missing := _required(body, "location", "job_id"):
            return _answer(400, f"{missing} is required")
        duration = 5.0 + _stable_int(body["location"]) % 1150 / 10
        return jsonify(
            location=f"gs://jobtrail-fake/prepared/{body['job_id']}.mp4",
            duration_seconds=duration,
            compute_seconds=round(duration * 0.4, 3),
        )

    @route("/instagram/<path:account_id>/media_publish", "instagram", "instagram.publish", ["POST"])
    def publish(account_id: str) -> Any:
        body = _json_body()
        if missing := _required(body, "location", "job_id"):
            return _answer(400, f"{missing} is required")
        return jsonify(world.publish(request.headers.get("Idempotency-Key"), body["job_id"]))

    def suno_unauthorized() -> tuple[Response, int] | None:
        presented = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        expected = world.suno_faults().api_key
        if not presented:
            return _answer(401, "Authorization header is required")
        if expected is not None and presented != expected.get_secret_value():
            return _answer(401, f"Invalid API key: {presented}")
        return None

    @route("/suno/api/v1/generate", "suno", "suno.generate", ["POST"])
    def suno_generate() -> Any:
        if refused := suno_unauthorized():
            return refused
        body = _json_body()
        custom = bool(body.get("customMode"))
        needed = ["callBackUrl", "style", "title"] if custom else ["callBackUrl", "prompt"]
        if custom and not body.get("instrumental"):
            needed.append("prompt")
        if missing := _required(body, *needed):
            return jsonify(code=400, msg=f"{missing} is required", data=None)
        if not world.spend_credit():
            # sunoapi.org: HTTP 200, code 429 in the body.
            return jsonify(code=429, msg="The current credits are insufficient. Please top up.", data=None)
        task = world.create_task(
            prompt=str(body.get("prompt", "")),
            title=str(body.get("title", "")),
            callback_url=body["callBackUrl"],
            audio_base=request.host_url.rstrip("/"),
        )
        return jsonify(code=200, msg="success", data={"taskId": task.task_id})

    @route("/suno/api/v1/generate/record-info", "suno", "suno.record_info", ["GET"])
    def suno_record_info() -> Any:
        if refused := suno_unauthorized():
            return refused
        task = world.task(request.args.get("taskId", ""))
        if task is None:
            return jsonify(code=404, msg="taskId not found", data=None)
        done = task.status == "SUCCESS"
        return jsonify(
            code=200,
            msg="success",
            data={
                "taskId": task.task_id,
                "parentMusicId": "",
                "param": json.dumps({"prompt": task.prompt, "title": task.title}),
                "response": {"taskId": task.task_id, "sunoData": [_camel_track(t) for t in task.tracks()]}
                if done
                else None,
                "status": task.status,
                "type": "GENERATE",
                "errorCode": 501 if task.error else None,
                "errorMessage": task.error,
            },
        )

    @route("/suno/api/v1/generate/credit", "suno", "suno.credit", ["GET"])
    def suno_credit() -> Any:
        if refused := suno_unauthorized():
            return refused
        return jsonify(code=200, msg="success", data=world.suno_faults().credits)

    @app.get("/suno/audio/<name>")
    def suno_audio(name: str) -> Response:
        return Response(b"ID3" + name.encode(), mimetype="audio/mpeg")

    @app.get("/_control")
    def read_control() -> Response:
        return jsonify(world.current_config().model_dump(mode="json"))

    @app.post("/_control")
    def control() -> Any:
        changes = _json_body()
        if changes.pop("reset", False):
            world.reset()
        try:
            config = world.configure(changes)
        except ValidationError as exc:
            return jsonify(
                error="INVALID_CONFIG", details=exc.errors(include_url=False, include_context=False)
            ), 400
        return jsonify(config.model_dump(mode="json"))

    @app.get("/_stats")
    def stats() -> Response:
        return jsonify(world.stats())

    return app


class FakeWorld:
    """The fake world served from a background thread on ``host`` (loopback; a free port by default)."""

    def __init__(
        self,
        config: FakeWorldConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        quiet: bool = True,
    ) -> None:
        self.app = create_fake_world(config)
        self._world: _World = self.app.extensions[_EXTENSION]
        self._server = BackgroundServer(self.app, host=host, port=port, quiet=quiet)
        self.port = self._server.port
        self.url = self._server.url

    @property
    def config(self) -> FakeWorldConfig:
        return self._world.current_config()

    def configure(self, **changes: Any) -> FakeWorldConfig:
        """E.g. ``configure(video={"fail_next_n": 2}, suno={"credits": 0})``; returns the new config."""
        return self._world.configure(changes)

    def reset(self) -> None:
        self._world.reset()

    def stats(self) -> dict[str, Any]:
        return self._world.stats()

    def finish_task(
        self, task_id: str, result: Literal["success", "fail"] = "success", *, call_back: bool = True
    ) -> None:
        """Finish a task now (one configured to never finish, say), and call back unless told not to."""
        task = self._world.task(task_id)
        if task is None:
            raise KeyError(task_id)
        task.faults.result = result
        task.faults.callbacks_enabled = call_back
        self._world.finish_task(task)

    def task_callback_url(self, task_id: str) -> str:
        """The callback URL a generation was handed."""
        task = self._world.task(task_id)
        if task is None:
            raise KeyError(task_id)
        return task.callback_url

    def settings(self, base: Settings | None = None, **overrides: Any) -> Settings:
        """``base`` (default: a fresh ``Settings()``) with every outside-service URL pointed here."""
        urls = {
            "video_source_url": f"{self.url}/video",
            "processor_url": f"{self.url}/processor",
            "instagram_url": f"{self.url}/instagram",
            "suno_api_url": f"{self.url}/suno",
        }
        return (base or Settings()).model_copy(update=urls | overrides)

    def stop(self) -> None:
        self._world.close()
        self._server.stop()

    def __enter__(self) -> FakeWorld:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=int, help="0 picks a free port.")
@click.option("--seed", default=0, show_default=True, type=int)
def main(host: str, port: int, seed: int) -> None:
    """Serve the fake video source, processor, Instagram and Suno until interrupted."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    world = FakeWorld(FakeWorldConfig(seed=seed), host=host, port=port, quiet=False)
    click.echo(f"fake world listening on {world.url}", nl=True)
    try:
        with _stop_on_sigterm():
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        world.stop()


if __name__ == "__main__":
    main()
