"""Starting and stopping the local stack: no orphans, partial stacks, failures."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

import local.stack as stack_mod
from local import procs
from local.stack import MissingPrerequisite, Stack, StartError

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FIXTURES = HERE / "stack_fixtures"
LOGS = ROOT / "out" / "stack"


def _alive(pid: int) -> bool:
    st = procs._proc_stat(pid)
    return st is not None and st[0] != "Z"


def _port_open(host_port: str) -> bool:
    host, port = host_port.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while True:
        left = [p for p in pids if _alive(p)]
        if not left or time.monotonic() > deadline:
            return left


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_stop_leaves_no_processes() -> None:
    before = set(procs.descendants(os.getpid()))
    stack = Stack(
        components=["firestore", "pubsub", "storage", "bridge", "issuer", "functions"],
        source=FIXTURES / "main.py",
        targets=["on_upload"],
        log_dir=LOGS / "test-lifecycle",
    )
    with stack:
        groups = stack.process_ids()
        assert set(groups) == {"firestore", "pubsub", "storage", "bridge", "issuer", "fn-on_upload"}
        children = [p for p in procs.descendants(os.getpid()) if p not in before]
        # The wrapper script and its JVM, gunicorn and its worker, ...
        assert len(children) > len(groups)
        endpoints = [
            stack.firestore_host,
            stack.pubsub_host,
            urlsplit(stack.storage_url or "").netloc,
            urlsplit(stack.issuer_url or "").netloc,
            urlsplit(stack.bridge_url or "").netloc,
            urlsplit(stack.functions["on_upload"]).netloc,
        ]
        assert all(_port_open(e) for e in endpoints if e)
    # stop() has returned: everything is gone already, no waiting.
    assert [p for p in children if _alive(p)] == []
    assert all(procs.group_members(g) == [] for g in groups.values())
    assert [p for p in procs.descendants(os.getpid()) if p not in before] == []
    assert not any(_port_open(e) for e in endpoints if e)


def test_failed_start_cleans_up() -> None:
    before = set(procs.descendants(os.getpid()))
    stack = Stack(
        components=["firestore", "issuer", "functions"],
        source=FIXTURES / "broken_main.py",
        targets=["sessions"],
        log_dir=LOGS / "test-broken",
        start_timeout_s=30,
    )
    t0 = time.monotonic()
    with pytest.raises(StartError, match="fn-sessions exited") as err:
        stack.start()
    assert time.monotonic() - t0 < 20
    assert "broken on purpose" in str(err.value)  # the log tail is in the message
    assert [p for p in procs.descendants(os.getpid()) if p not in before] == []
    assert all(procs.group_members(g) == [] for g in stack.process_ids().values())


def test_firestore_only_stack() -> None:
    with Stack(components=["firestore"], log_dir=LOGS / "test-firestore-only") as stack:
        assert stack.firestore_host and stack.storage_url is None and stack.functions == {}
        assert stack.client_env() == {
            "GOOGLE_CLOUD_PROJECT": "demo-pixme",
            "FIRESTORE_EMULATOR_HOST": stack.firestore_host,
        }
        db = stack.firestore_client()
        db.collection("things").document("one").set({"n": 1})
        assert db.collection("things").document("one").get().to_dict() == {"n": 1}
        stack.wipe_firestore()
        assert not db.collection("things").document("one").get().exists
        assert set(stack.process_ids()) == {"firestore"}


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_watchdog_cleans_up_after_a_killed_parent(tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, str(FIXTURES / "hold_stack.py"), str(LOGS / "test-watchdog")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()  # bounded: the stack's own start timeout
        groups = json.loads(line)
        assert set(groups) == {"firestore", "issuer"}
        members = [p for g in groups.values() for p in procs.group_members(g)]
        assert len(members) >= 3  # bash + java, and the issuer
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=5)
        assert _wait_gone(members, timeout_s=10) == []
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=5)


def test_missing_prerequisites_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stack_mod, "fake_gcs_path", lambda: None)
    monkeypatch.setattr(stack_mod, "java_major_version", lambda java=None: 11)
    monkeypatch.setattr(stack_mod, "firestore_emulator_path", lambda env=None: None)
    with pytest.raises(MissingPrerequisite) as err:
        Stack(components=["firestore", "storage"], log_dir=LOGS / "test-prereq").start()
    message = str(err.value)
    assert "openjdk-17-jre-headless" in message
    assert "gcloud components install cloud-firestore-emulator pubsub-emulator" in message
    assert "fake-gcs-server" in message


def test_missing_renderer_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(stack_mod, "RENDERER_PYTHON", tmp_path / "no-such-venv" / "bin" / "python")
    with pytest.raises(MissingPrerequisite, match="make setup"):
        stack_mod.check_prerequisites(["renderer"])


def test_components_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown components"):
        Stack(components=["firestore", "bigtable"])
    with pytest.raises(ValueError, match="bridge needs"):
        Stack(components=["bridge", "functions"])


def test_real_model_settings_pass_through_and_skip_the_renderer() -> None:
    caller = {
        "PATH": os.environ.get("PATH", ""),
        "GEMINI_API_KEY": "real-key",
        "FIRESTORE_EMULATOR_HOST": "elsewhere:1",
        "PIXME_MODEL": "some-model",
    }
    stack = Stack(caller_env=caller)
    assert "renderer" not in stack.components
    env = stack._functions_env()
    assert env["GEMINI_API_KEY"] == "real-key"
    assert "GOOGLE_GEMINI_BASE_URL" not in env
    assert "FIRESTORE_EMULATOR_HOST" not in env  # not started yet, and never inherited
    assert env["PIXME_MODEL"] == "some-model"
    offline = Stack(caller_env={"PATH": caller["PATH"]})
    assert "renderer" in offline.components
    offline.renderer_url = "http://127.0.0.1:9999"  # as start() sets it
    env = offline._functions_env()
    # Offline, the functions run as in production: Vertex mode, here against the renderer.
    assert env["GOOGLE_GENAI_USE_VERTEXAI"] == "true"
    assert env["GOOGLE_VERTEX_BASE_URL"] == "http://127.0.0.1:9999"


# --- the command line: `python -m local.stack up` ------------------------------------


def _marked(marker: str) -> list[int]:
    """Live processes whose environment carries the marker (survives re-parenting)."""
    needle = f"STACK_TEST_MARKER={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _alive(int(entry.name)):
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _start_cli(name: str, tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path, Path, str]:
    marker = uuid.uuid4().hex
    out, err = tmp_path / "up.out", tmp_path / "up.err"
    proc = subprocess.Popen(
        [sys.executable, "-m", "local.stack", "up", "--no-renderer",
         "--source", str(FIXTURES / "main.py"), "--log-dir", str(LOGS / name)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=out.open("wb"),
        stderr=err.open("wb"),
        env={**os.environ, "STACK_TEST_MARKER": marker},
        start_new_session=True,
    )  # fmt: skip
    return proc, out, err, marker


def _wait_text(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if needle in path.read_text(errors="replace"):
            return True
        time.sleep(0.05)
    return needle in path.read_text(errors="replace")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_cli_up_serves_then_stops_on_sigterm(tmp_path: Path) -> None:
    proc, out, err, marker = _start_cli("test-cli", tmp_path)
    try:
        assert _wait_text(out, "Ctrl-C stops everything.", proc, 40), err.read_text()
        text = out.read_text()
        assert "TOKEN=ey" in text and "curl -X PUT --data-binary @" in text
        assert "x-goog-if-generation-match: 0" in text
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (LOGS / "test-cli" / "stack.env").read_text().splitlines()
        )
        token, sessions = env["TOKEN"].strip("'"), env["SESSIONS_URL"].strip("'")
        resp = requests.get(sessions + "/styles", headers={"Authorization": f"Bearer {token}"}, timeout=5)
        assert resp.status_code == 200 and resp.json()["authorization"] == f"Bearer {token}"
        assert len(_marked(marker)) >= 8  # five functions, emulators, bridge, issuer, ...
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "[stack] stopped" in err.read_text()
        assert _marked(marker) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_cli_ctrl_c_while_starting_leaves_nothing(tmp_path: Path) -> None:
    proc, _out, err, marker = _start_cli("test-cli-interrupt", tmp_path)
    try:
        # Interrupt as soon as the first component is ready: the JVMs are still starting.
        assert _wait_text(err, " ready on ", proc, 40), err.read_text()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
        assert "interrupted while starting" in err.read_text()
        assert "all ready" not in err.read_text()
        assert _marked(marker) == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
