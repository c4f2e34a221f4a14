"""The Suno client against the fake Suno on loopback, callbacks included, and the secret hygiene."""

from __future__ import annotations

import logging
import queue
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest
from flask import Flask, request
from pydantic import SecretStr

from devtools.fakes.world import BackgroundServer, FakeWorld, FakeWorldConfig
from services.errors import InvalidInput
from services.external.resilience import ExternalError, PermanentExternalError, RetryableExternalError
from services.external.suno import SunoClient, SunoNoCredits, parse_callback
from services.settings import Settings

# Planted: the whole test module fails if this string shows up anywhere it must not.
PLANTED_KEY = "sk-planted-3f9c1e7a5b2d4c60"
PLANTED_CALLBACK_TOKEN = "cbtok-planted-8e21d0"
FAST = {
    "external_timeout_seconds": 0.5,
    "external_max_attempts": 3,
    "external_backoff_initial_seconds": 0.01,
    "external_backoff_max_seconds": 0.05,
    "external_retry_after_max_seconds": 5.0,
    "breaker_fail_max": 3,
    "breaker_reset_seconds": 30.0,
    "suno_api_key": SecretStr(PLANTED_KEY),
    "suno_callback_token": SecretStr(PLANTED_CALLBACK_TOKEN),
}
PROMPT = "a calm piano track about the sea"


class RecordedSleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


class CallbackReceiver:
    """A tiny loopback endpoint that keeps every callback body it is sent."""

    def __init__(self) -> None:
        self.bodies: queue.Queue[dict[str, Any]] = queue.Queue()
        app = Flask("receiver")
        app.add_url_rule("/suno-callback", "callback", self._receive, methods=["POST"])
        self._server = BackgroundServer(app)
        self.url = f"{self._server.url}/suno-callback?token={PLANTED_CALLBACK_TOKEN}"

    def _receive(self) -> tuple[str, int]:
        self.bodies.put(request.get_json())
        return "", 204

    def next(self, timeout: float = 5.0) -> dict[str, Any]:
        return self.bodies.get(timeout=timeout)

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def world() -> Iterator[FakeWorld]:
    with FakeWorld(FakeWorldConfig(seed=5)) as w:
        yield w


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
def suno(world: FakeWorld, sleeps: RecordedSleeps) -> Iterator[SunoClient]:
    client = SunoClient(world.settings(Settings(**FAST)), sleep=sleeps)
    yield client
    client.close()


@pytest.fixture
def receiver() -> Iterator[CallbackReceiver]:
    r = CallbackReceiver()
    yield r
    r.stop()


def calls(world: FakeWorld, endpoint: str = "suno.generate") -> int:
    return int(world.stats()["calls"].get(endpoint, 0))


T = TypeVar("T")


def wait_for(check: Callable[[], T], *, until: Callable[[T], bool]) -> T:
    """``check()`` once ``until`` holds for it, or its last value after 5 s (for the assert to show)."""
    deadline = time.monotonic() + 5.0
    while True:
        value = check()
        if until(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.02)


def callbacks_sent(world: FakeWorld, expected: int) -> dict[str, int]:
    # The receiver has the body before the fake has counted the delivery.
    return wait_for(lambda: world.stats()["callbacks"], until=lambda c: c.get("sent") == expected)


def test_generate_then_poll_until_success(
    world: FakeWorld, suno: SunoClient, receiver: CallbackReceiver
) -> None:
    task_id = suno.generate(PROMPT, receiver.url)

    record = wait_for(lambda: suno.record_info(task_id), until=lambda r: r.finished)

    assert record.succeeded
    assert record.status == "SUCCESS"
    assert record.audio_url == f"{world.url}/suno/audio/{task_id}-1.mp3"
    assert record.error is None


def test_generate_sends_sunoapi_fields_in_custom_mode(world: FakeWorld, suno: SunoClient) -> None:
    world.configure(suno={"callbacks_enabled": False})
    task_id = suno.generate("", "http://127.0.0.1:9/cb", style="lofi", title="Sea", instrumental=True)

    assert task_id.startswith("fake-5-")
    with pytest.raises(PermanentExternalError) as caught:
        suno.generate("", "http://127.0.0.1:9/cb", style="lofi", title="Sea", instrumental=False)
    assert caught.value.code == "SUNO_REJECTED"
    assert "prompt is required" in caught.value.message


def test_callback_is_delivered_to_a_loopback_receiver(
    world: FakeWorld, suno: SunoClient, receiver: CallbackReceiver
) -> None:
    task_id = suno.generate(PROMPT, receiver.url)

    callback = parse_callback(receiver.next())

    assert callback.task_id == task_id
    assert callback.succeeded
    assert callback.audio_url == f"{world.url}/suno/audio/{task_id}-1.mp3"
    assert callbacks_sent(world, 1) == {"sent": 1}
    assert world.stats()["suno_tasks"][task_id] == {
        "status": "SUCCESS",
        "callbacks_sent": 1,
        "job_attempt": None,
    }


def test_duplicate_callbacks_arrive_twice_with_the_same_outcome(
    world: FakeWorld, suno: SunoClient, receiver: CallbackReceiver
) -> None:
    world.configure(suno={"duplicate_callbacks": True})
    task_id = suno.generate(PROMPT, receiver.url)

    first, second = parse_callback(receiver.next()), parse_callback(receiver.next())

    assert first == second
    assert first.task_id == task_id
    assert callbacks_sent(world, 2) == {"sent": 2}


def test_intermediate_callbacks_come_before_complete(
    suno: SunoClient, world: FakeWorld, receiver: CallbackReceiver
) -> None:
    world.configure(suno={"intermediate_callbacks": True})
    suno.generate(PROMPT, receiver.url)

    statuses = [parse_callback(receiver.next()) for _ in range(3)]

    assert [c.status for c in statuses] == ["TEXT_SUCCESS", "FIRST_SUCCESS", "SUCCESS"]
    assert [c.finished for c in statuses] == [False, False, True]
    assert statuses[0].audio_url is None
    assert statuses[1].audio_url is not None


def test_a_failed_generation_is_reported_by_callback_and_record(
    world: FakeWorld, suno: SunoClient, receiver: CallbackReceiver
) -> None:
    world.configure(suno={"result": "fail"})
    task_id = suno.generate(PROMPT, receiver.url)

    callback = parse_callback(receiver.next())
    record = suno.record_info(task_id)

    assert callback.failed
    assert callback.status == "GENERATE_AUDIO_FAILED"
    assert callback.error == "Audio generation failed."
    assert record.failed
    assert record.error == "Audio generation failed."
    assert record.audio_url is None


def test_a_generation_that_never_finishes_stays_pending(
    world: FakeWorld, suno: SunoClient, receiver: CallbackReceiver
) -> None:
    world.configure(suno={"result": "never", "callback_delay_s": 0.01})
    task_id = suno.generate(PROMPT, receiver.url)
    time.sleep(0.2)

    assert suno.record_info(task_id).status == "PENDING"
    assert receiver.bodies.empty()


def test_without_callbacks_polling_still_sees_the_result(
    world: FakeWorld, suno: SunoClient, receiver: CallbackReceiver
) -> None:
    world.configure(suno={"callbacks_enabled": False})
    task_id = suno.generate(PROMPT, receiver.url)

    record = wait_for(lambda: suno.record_info(task_id), until=lambda r: r.finished)

    assert record.succeeded
    assert receiver.bodies.empty()
    assert world.stats()["callbacks"] == {}


def test_no_credits_raises_suno_no_credits_without_retrying(world: FakeWorld, suno: SunoClient) -> None:
    world.configure(suno={"credits": 0})

    with pytest.raises(SunoNoCredits) as caught:
        suno.generate(PROMPT, "http://127.0.0.1:9/cb")

    assert isinstance(caught.value, PermanentExternalError)
    assert caught.value.code == "SUNO_NO_CREDITS"
    assert caught.value.retryable is False
    assert caught.value.credits == 0
    assert calls(world) == 1
    assert suno.http.breaker.state == "closed"


def test_credits_run_out(world: FakeWorld, suno: SunoClient) -> None:
    world.configure(suno={"credits": 1, "callbacks_enabled": False})

    suno.generate(PROMPT, "http://127.0.0.1:9/cb")
    assert suno.remaining_credits() == 0
    with pytest.raises(SunoNoCredits):
        suno.generate(PROMPT, "http://127.0.0.1:9/cb")


def test_generate_is_retried_when_suno_provably_did_not_start_it(
    world: FakeWorld, suno: SunoClient, sleeps: RecordedSleeps
) -> None:
    world.configure(
        suno={"fail_next_n": 1, "rate_limit_next_n": 1, "retry_after_s": 1, "callbacks_enabled": False}
    )

    task_id = suno.generate(PROMPT, "http://127.0.0.1:9/cb")

    assert calls(world) == 3
    assert sleeps[1] == 1.0  # the 430's Retry-After
    assert list(world.stats()["suno_tasks"]) == [task_id]


def test_generate_is_not_retried_when_suno_may_have_started_it(
    world: FakeWorld, sleeps: RecordedSleeps
) -> None:
    world.configure(suno={"latency_ms": 400, "callbacks_enabled": False})
    client = SunoClient(world.settings(Settings(**FAST | {"external_timeout_seconds": 0.1})), sleep=sleeps)

    with pytest.raises(RetryableExternalError) as caught:
        client.generate(PROMPT, "http://127.0.0.1:9/cb")
    client.close()

    assert caught.value.code == "SUNO_TIMEOUT"
    assert sleeps == []
    assert calls(world) == 1


def test_record_info_of_an_unknown_task_is_permanent(suno: SunoClient) -> None:
    with pytest.raises(PermanentExternalError) as caught:
        suno.record_info("no-such-task")

    assert caught.value.code == "SUNO_REJECTED"


def test_parse_callback_rejects_what_is_not_a_suno_callback() -> None:
    with pytest.raises(InvalidInput):
        parse_callback({"code": 200, "msg": "ok"})
    with pytest.raises(InvalidInput):
        parse_callback({"code": 200, "msg": "ok", "data": {"callbackType": "complete"}})
    with pytest.raises(InvalidInput):
        parse_callback({"msg": "ok", "data": {"callbackType": "complete", "task_id": "t"}})
    with pytest.raises(InvalidInput):
        parse_callback({"code": 200, "msg": "ok", "data": {"callbackType": "weird", "task_id": "t"}})


def test_parse_callback_reads_a_failure_by_its_code() -> None:
    callback = parse_callback(
        {
            "code": 531,
            "msg": "Generation failed, credits refunded",
            "data": {"callbackType": "complete", "task_id": "t"},
        }
    )

    assert callback.failed
    assert callback.error == "Generation failed, credits refunded"


def _everything_said_about(exc: BaseException) -> str:
    return "\n".join([str(exc), repr(exc), *traceback.format_exception(exc)])


def test_a_planted_key_never_reaches_an_error_or_a_log_line(
    world: FakeWorld, sleeps: RecordedSleeps, receiver: CallbackReceiver, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    failures: list[ExternalError] = []
    # Seven infrastructure failures below: the breaker trips on the last and then fails fast.
    overrides = {"breaker_fail_max": 7, "external_timeout_seconds": 0.2}
    client = SunoClient(world.settings(Settings(**FAST | overrides)), sleep=sleeps)

    def collect(call: Callable[[], object]) -> None:
        try:
            call()
        except ExternalError as exc:
            failures.append(exc)

    # The fake echoes a wrong key back in its 401, as careless APIs do. No callbacks: their URL
    # (with its token) is Suno's to call, and the fake's own HTTP library would log it.
    world.configure(suno={"api_key": "the-right-key", "callbacks_enabled": False})
    collect(lambda: client.generate(PROMPT, receiver.url))
    world.configure(suno={"api_key": None, "credits": 0})
    collect(lambda: client.generate(PROMPT, receiver.url))
    world.configure(suno={"credits": 10, "fail_next_n": 3})
    collect(lambda: client.record_info("fake-5-00001"))
    world.configure(suno={"fail_next_n": 0, "latency_ms": 400})
    collect(lambda: client.generate(PROMPT, receiver.url))
    collect(lambda: client.record_info("fake-5-00001"))
    collect(lambda: client.record_info("fake-5-00001"))
    client.close()

    assert [f.code for f in failures] == [
        "SUNO_AUTH_FAILED",
        "SUNO_NO_CREDITS",
        "SUNO_UNAVAILABLE",
        "SUNO_TIMEOUT",
        "SUNO_TIMEOUT",
        "SUNO_CIRCUIT_OPEN",
    ]
    assert "[REDACTED]" in failures[0].message
    assert any(r.levelno == logging.WARNING for r in caplog.records)  # the retries were logged
    for secret in (PLANTED_KEY, PLANTED_CALLBACK_TOKEN):
        for failure in failures:
            assert secret not in _everything_said_about(failure)
        assert secret not in caplog.text
        for record in caplog.records:
            assert secret not in record.getMessage()
            assert secret not in str(record.__dict__)
