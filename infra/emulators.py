"""Start and stop Google's official Firestore and Pub/Sub emulators on free loopback ports.

    python -m infra.emulators start   # prints export lines; state in .emulators/state.json
    python -m infra.emulators stop

Each emulator runs in its own process group (gcloud spawns a Java child that outlives it), so
stopping kills the whole group. Used by the pytest session fixture and by the local stack.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

STATE_DIR = Path(__file__).resolve().parent.parent / ".emulators"


class EmulatorError(RuntimeError):
    pass


@dataclass
class Emulator:
    name: str  # "firestore" | "pubsub"
    host: str  # "127.0.0.1:PORT"
    pid: int  # process group id
    log: str

    @property
    def env_var(self) -> str:
        return f"{self.name.upper()}_EMULATOR_HOST"


def require_tools() -> None:
    """Fail loudly (never skip) when the emulators cannot run here."""
    missing = [tool for tool in ("gcloud", "java") if shutil.which(tool) is None]
    if missing:
        raise EmulatorError(
            f"missing {', '.join(missing)}: install the Google Cloud CLI with the emulator components "
            "(apt-get install google-cloud-cli google-cloud-cli-firestore-emulator "
            "google-cloud-cli-pubsub-emulator) and Java 17 (apt-get install openjdk-17-jre-headless)"
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _command(name: str, host: str, project: str) -> list[str]:
    if name == "firestore":
        return ["gcloud", "emulators", "firestore", "start", f"--host-port={host}", "--quiet"]
    return [
        "gcloud",
        "beta",
        "emulators",
        "pubsub",
        "start",
        f"--host-port={host}",
        f"--project={project}",
        "--quiet",
    ]


def wait_until_up(
    host: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None, log: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise EmulatorError(f"emulator at {host} exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://{host}/", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise EmulatorError(f"emulator at {host} did not answer within {timeout:.0f}s; see {log}")


def start(
    name: str, *, project: str = "jobtrail-local", port: int | None = None, log_dir: Path = STATE_DIR
) -> Emulator:
    require_tools()
    log_dir.mkdir(parents=True, exist_ok=True)
    host = f"127.0.0.1:{port or free_port()}"
    log = log_dir / f"{name}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            _command(name, host, project),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    emulator = Emulator(name=name, host=host, pid=proc.pid, log=str(log))
    try:
        wait_until_up(host, proc=proc, log=str(log))
    except EmulatorError:
        stop(emulator)
        raise
    return emulator


def stop(emulator: Emulator, timeout: float = 10.0) -> None:
    """Stop the emulator's whole process group (gcloud and its Java child)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(emulator.pid, signal.SIGTERM)
        os.killpg(emulator.pid, signal.SIGCONT)  # a frozen emulator must wake to die
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(emulator.pid, 0)
        except ProcessLookupError:
            break
        with contextlib.suppress(ChildProcessError):
            os.waitpid(emulator.pid, os.WNOHANG)
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(emulator.pid, signal.SIGKILL)


def freeze(emulator: Emulator) -> None:
    """Make the emulator unreachable without losing its data (SIGSTOP to the whole group):
    connections hang, as they do when Firestore is down or partitioned away."""
    os.killpg(emulator.pid, signal.SIGSTOP)


def thaw(emulator: Emulator) -> None:
    os.killpg(emulator.pid, signal.SIGCONT)


def restart(emulator: Emulator, *, project: str = "jobtrail-local") -> Emulator:
    """Stop and start again on the same port (state is lost: the emulators keep it in memory)."""
    stop(emulator)
    port = int(emulator.host.rsplit(":", 1)[1])
    return start(emulator.name, project=project, port=port, log_dir=Path(emulator.log).parent)


@contextlib.contextmanager
def running(project: str = "jobtrail-local", log_dir: Path = STATE_DIR) -> Iterator[dict[str, Emulator]]:
    """Both emulators, started in parallel, stopped on exit."""
    require_tools()
    started: dict[str, Emulator] = {}
    try:
        for name in ("firestore", "pubsub"):
            started[name] = start(name, project=project, log_dir=log_dir)
        yield started
    finally:
        for emulator in started.values():
            stop(emulator)


def _main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "start"
    state = STATE_DIR / "state.json"
    if command == "start":
        project = os.environ.get("GOOGLE_CLOUD_PROJECT", "jobtrail-local")  # CLI edge, not app code
        emulators = [start(n, project=project) for n in ("firestore", "pubsub")]
        state.write_text(json.dumps([asdict(e) for e in emulators]))
        for e in emulators:
            print(f"export {e.env_var}={e.host}")
        return 0
    if command == "stop":
        if state.exists():
            for raw in json.loads(state.read_text()):
                stop(Emulator(**raw))
            state.unlink()
        return 0
    print("usage: python -m infra.emulators start|stop", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
