"""The local bootstrap and Terraform build the same Pub/Sub topology from infra/topology.yaml.

What the bootstrap creates is recorded by running ``infra.bootstrap.bootstrap`` against recording
clients. What Terraform creates is worked out from the HCL itself: the pubsub module's resources
are read with python-hcl2 and their attribute expressions evaluated against the YAML file every
environment passes in (each environment root is terraform/modules/stack). The evaluator knows only "read it from the topology entry" shapes; a literal
(a hard-coded subscription, attempt count or backoff) is reported, not evaluated, so the check
fails the moment Terraform stops reading the file. (``terraform test`` in terraform/environments/*
checks the same invariants on Terraform's own evaluation.)
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import hcl2
import pytest
import yaml

import infra.bootstrap
from infra.topology import TOPOLOGY_FILE, load_topology

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
PUBSUB_MODULE = TERRAFORM / "modules" / "pubsub" / "main.tf"
STACK_MODULE = TERRAFORM / "modules" / "stack"
PROJECT = "parity-project"
PREFIX = "jt-test-"


@dataclass(frozen=True)
class Sub:
    """One subscription as either reader creates it: names are short (no project, no prefix)."""

    topic: str
    ack_deadline_seconds: int
    message_retention: str
    dead_letter_topic: str
    max_delivery_attempts: int
    minimum_backoff: str
    maximum_backoff: str
    push_to: str | None


# ---- what the bootstrap creates -----------------------------------------------------------------


class _RecordingPublisher:
    topics: list[str]

    def __init__(self) -> None:
        type(self).topics = []

    def topic_path(self, project: str, name: str) -> str:
        return f"projects/{project}/topics/{name}"

    def create_topic(self, name: str) -> None:
        self.topics.append(name)

    def stop(self) -> None:
        pass


class _RecordingSubscriber:
    requests: list[dict[str, Any]]

    def __init__(self) -> None:
        type(self).requests = []

    def subscription_path(self, project: str, name: str) -> str:
        return f"projects/{project}/subscriptions/{name}"

    def create_subscription(self, request: dict[str, Any]) -> None:
        self.requests.append(request)

    def close(self) -> None:
        pass


def _short(path: str, kind: str) -> str:
    prefix = f"projects/{PROJECT}/{kind}/{PREFIX}"
    assert path.startswith(prefix), path
    return path.removeprefix(prefix)


def bootstrap_view(monkeypatch: pytest.MonkeyPatch) -> tuple[set[str], dict[str, Sub]]:
    monkeypatch.setattr(
        infra.bootstrap,
        "pubsub_v1",
        SimpleNamespace(PublisherClient=_RecordingPublisher, SubscriberClient=_RecordingSubscriber),
    )
    push_targets = {s.push_to for s in load_topology().subscriptions.values() if s.push_to}
    infra.bootstrap.bootstrap(
        PROJECT, prefix=PREFIX, push_endpoints={name: f"http://127.0.0.1:1/{name}" for name in push_targets}
    )
    topics = {_short(t, "topics") for t in _RecordingPublisher.topics}
    subs = {}
    for request in _RecordingSubscriber.requests:
        push = request.get("push_config", {}).get("push_endpoint")
        subs[_short(request["name"], "subscriptions")] = Sub(
            topic=_short(request["topic"], "topics"),
            ack_deadline_seconds=request["ack_deadline_seconds"],
            message_retention=f"{request['message_retention_duration'].seconds}s",
            dead_letter_topic=_short(request["dead_letter_policy"]["dead_letter_topic"], "topics"),
            max_delivery_attempts=request["dead_letter_policy"]["max_delivery_attempts"],
            minimum_backoff=f"{request['retry_policy']['minimum_backoff'].seconds}s",
            maximum_backoff=f"{request['retry_policy']['maximum_backoff'].seconds}s",
            push_to=push.rsplit("/", 1)[1] if push else None,
        )
    return topics, subs


# ---- what Terraform creates -----------------------------------------------------------------


def _unquote(key: str) -> str:
    return key.strip('"')


def _expr(value: Any) -> str:
    """python-hcl2 renders expressions as "${...}" and strings as '"..."'."""
    text = str(value)
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    if text.startswith("${") and text.endswith("}"):
        return text[2:-1]
    return text


def resources(tf: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for block in tf.get("resource", []):
        for rtype, named in block.items():
            if _unquote(rtype) == kind:
                found.update({_unquote(name): body for name, body in named.items()})
    return found


def all_pubsub_resources() -> list[tuple[Path, str, str]]:
    """(file, type, name) of every Pub/Sub topic or subscription declared anywhere under terraform/."""
    declared = []
    for path in sorted(TERRAFORM.rglob("*.tf")):
        if ".terraform" in path.parts:
            continue
        tf = hcl2.load(path.open())
        for kind in ("google_pubsub_topic", "google_pubsub_subscription"):
            declared += [(path, kind, name) for name in resources(tf, kind)]
    return declared


_FIELD = re.compile(r"(\w+)\s*=\s*(try\(\s*s\.([\w.]+)\s*,\s*([^)]*)\)|s\.([\w.]+))\s*(?:,|\}$)")


def all_locals(tf: dict[str, Any]) -> dict[str, Any]:
    """Every ``locals`` block of a file, merged (Terraform allows several)."""
    merged: dict[str, Any] = {}
    for block in tf.get("locals", []):
        merged.update(block)
    return merged


def normalized_entries(module: dict[str, Any], local_name: str, source: str) -> dict[str, tuple[str, Any]]:
    """The module's ``{for name, s in local.topology.<source> : name => {field = s.x, ...}}`` local,
    as field -> (path in the YAML entry, default). Anything else is not reading the file."""
    locals_block = all_locals(module)
    expr = _expr(locals_block[local_name])
    head = f"{{for name, s in local.topology.{source} : name => {{"
    assert expr.startswith(head), f"local.{local_name} must be a for-expression over local.topology.{source}"
    assert _expr(locals_block["topology"]) == "yamldecode(file(var.topology_file))"
    body = expr[len(head) :].removesuffix("}")
    fields = {}
    for match in _FIELD.finditer(body):
        field, _, try_path, default, path = match.groups()
        fields[field] = (try_path or path, yaml.safe_load(default) if default is not None else None)
    mapped = re.findall(r"(\w+)\s*=", body)
    unmapped = set(mapped) - set(fields)
    assert not unmapped, (
        f"local.{local_name} sets {sorted(unmapped)} from something other than the YAML entry"
    )
    return fields


def _lookup(entry: dict[str, Any], path: str, default: Any) -> Any:
    value: Any = entry
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return default
        value = value[part]
    return value


def _each_value(expr: str, value: dict[str, Any], what: str) -> Any:
    match = re.fullmatch(r"each\.value\.(\w+)", expr)
    if not match:
        raise AssertionError(f"{what} = {expr!r} does not come from the topology entry")
    return value[match.group(1)]


def _topic_of(expr: str, value: dict[str, Any], what: str) -> str:
    match = re.fullmatch(r"google_pubsub_topic\.this\[each\.value\.(\w+)\]\.id", expr)
    if not match:
        raise AssertionError(f"{what} = {expr!r} is not a topic of the topology file")
    return str(value[match.group(1)])


def terraform_view(topology_file: Path) -> tuple[set[str], dict[str, Sub]]:
    module = hcl2.load(PUBSUB_MODULE.open())
    topology = yaml.safe_load(topology_file.read_text())
    sub_fields = normalized_entries(module, "subscriptions", "subscriptions")
    normalized_entries(module, "topics", "topics")

    [topic] = resources(module, "google_pubsub_topic").values()
    [sub] = resources(module, "google_pubsub_subscription").values()
    assert _expr(topic["for_each"]) == "local.topics"
    assert _expr(sub["for_each"]) == "local.subscriptions"
    for resource in (topic, sub):
        assert _expr(resource["name"]) == "${var.prefix}${each.key}", "names must be <prefix><topology name>"

    topics = set(topology["topics"])
    subs = {}
    for name, entry in topology["subscriptions"].items():
        value = {field: _lookup(entry, path, default) for field, (path, default) in sub_fields.items()}
        [dead_letter] = sub["dead_letter_policy"]
        [retry] = sub["retry_policy"]
        [push] = [d['"push_config"'] for d in sub.get("dynamic", []) if '"push_config"' in d] or [None]
        push_to = None
        if push is not None:
            push_for_each = _expr(push["for_each"])
            assert push_for_each == "each.value.push_to != null ? [each.value.push_to] : []", push_for_each
            push_to = value["push_to"]
        subs[name] = Sub(
            topic=_topic_of(_expr(sub["topic"]), value, "topic"),
            ack_deadline_seconds=_each_value(
                _expr(sub["ack_deadline_seconds"]), value, "ack_deadline_seconds"
            ),
            message_retention=_each_value(
                _expr(sub["message_retention_duration"]), value, "message_retention"
            ),
            dead_letter_topic=_topic_of(_expr(dead_letter["dead_letter_topic"]), value, "dead_letter_topic"),
            max_delivery_attempts=_each_value(
                _expr(dead_letter["max_delivery_attempts"]), value, "max_delivery_attempts"
            ),
            minimum_backoff=_each_value(_expr(retry["minimum_backoff"]), value, "minimum_backoff"),
            maximum_backoff=_each_value(_expr(retry["maximum_backoff"]), value, "maximum_backoff"),
            push_to=push_to,
        )
    return topics, subs


def topology_file_of(stack: Path) -> Path:
    """The file the stack module hands the pubsub module, with its locals resolved."""
    tf = hcl2.load((stack / "main.tf").open())
    locals_block = all_locals(tf)
    repo_root = _expr(locals_block["repo_root"])
    match = re.fullmatch(r'abspath\("\$\{path\.module\}/([./]+)"\)', repo_root)
    assert match, f"repo_root = {repo_root!r}"
    root = (stack / match.group(1)).resolve()
    [module] = [m['"pubsub"'] for m in tf["module"] if '"pubsub"' in m]
    topology_file = _expr(module["topology_file"])
    assert topology_file.startswith("${local.repo_root}/"), topology_file
    return root / topology_file.removeprefix("${local.repo_root}/")


ENVIRONMENTS = sorted(p for p in (TERRAFORM / "environments").iterdir() if (p / "main.tf").exists())


# ---- the checks -------------------------------------------------------------------------------


def test_there_are_environments_to_check() -> None:
    assert {p.name for p in ENVIRONMENTS} >= {"dev", "prod"}


def test_the_stack_hands_terraform_the_file_the_bootstrap_reads() -> None:
    assert topology_file_of(STACK_MODULE) == TOPOLOGY_FILE.resolve()


@pytest.mark.parametrize("environment", ENVIRONMENTS, ids=lambda p: p.name)
def test_every_environment_is_the_stack(environment: Path) -> None:
    tf = hcl2.load((environment / "main.tf").open())
    sources = [_expr(block["source"]) for m in tf.get("module", []) for block in m.values()]
    assert sources == ["../../modules/stack"], sources


def test_terraform_declares_no_topic_or_subscription_outside_the_topology_module() -> None:
    declared = all_pubsub_resources()

    assert declared == [
        (PUBSUB_MODULE, "google_pubsub_topic", "this"),
        (PUBSUB_MODULE, "google_pubsub_subscription", "this"),
    ]


def test_bootstrap_and_terraform_create_the_same_topics_and_subscriptions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    boot_topics, boot_subs = bootstrap_view(monkeypatch)
    tf_topics, tf_subs = terraform_view(TOPOLOGY_FILE)

    assert tf_topics == boot_topics
    assert tf_subs == boot_subs
    assert boot_subs, "the topology file lists subscriptions"
    # Every subscription dead-letters, with the attempts and backoff the file gives it.
    model = load_topology()
    for name, sub in tf_subs.items():
        assert sub.dead_letter_topic == model.subscriptions[name].dead_letter_topic
        assert sub.max_delivery_attempts == model.subscriptions[name].max_delivery_attempts
        assert sub.minimum_backoff == model.subscriptions[name].retry_policy.minimum_backoff


# ---- the check itself catches drift -----------------------------------------------------------


def _mutated_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, old: str, new: str) -> None:
    text = PUBSUB_MODULE.read_text()
    assert old in text
    copy = tmp_path / "main.tf"
    copy.write_text(text.replace(old, new, 1))
    monkeypatch.setattr(sys.modules[__name__], "PUBSUB_MODULE", copy)


def test_a_hard_coded_attempt_count_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _mutated_module(
        tmp_path,
        monkeypatch,
        "max_delivery_attempts = each.value.max_delivery_attempts",
        "max_delivery_attempts = 5",
    )

    with pytest.raises(AssertionError, match="max_delivery_attempts"):
        terraform_view(TOPOLOGY_FILE)


def test_a_backoff_not_read_from_the_file_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _mutated_module(
        tmp_path,
        monkeypatch,
        "maximum_backoff       = s.retry_policy.maximum_backoff",
        'maximum_backoff = "600s"',
    )

    with pytest.raises(AssertionError, match="maximum_backoff"):
        terraform_view(TOPOLOGY_FILE)


def test_a_hard_coded_subscription_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extra = tmp_path / "terraform" / "modules" / "extra" / "main.tf"
    extra.parent.mkdir(parents=True)
    extra.write_text(
        'resource "google_pubsub_subscription" "audit" {\n  name  = "audit"\n  topic = "video-jobs"\n}\n'
    )
    monkeypatch.setattr(sys.modules[__name__], "TERRAFORM", tmp_path / "terraform")

    assert (extra, "google_pubsub_subscription", "audit") in all_pubsub_resources()


def test_a_changed_topology_file_changes_what_terraform_creates(tmp_path: Path) -> None:
    changed = yaml.safe_load(TOPOLOGY_FILE.read_text())
    changed["subscriptions"]["video-worker"]["max_delivery_attempts"] = 7
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(changed))

    _, subs = terraform_view(path)

    assert subs["video-worker"].max_delivery_attempts == 7


def test_an_apply_leaves_a_paused_queue_paused() -> None:
    """The control plane pauses a queue by detaching its push endpoint (services/control.py); if
    Terraform managed push_config after creation, the next apply would attach it again and the
    worker would nack every delivery of the paused queue until it dead-lettered."""
    [sub] = resources(hcl2.load(PUBSUB_MODULE.open()), "google_pubsub_subscription").values()
    [lifecycle] = sub["lifecycle"]
    assert [_expr(e) for e in lifecycle["ignore_changes"]] == ["push_config"]
