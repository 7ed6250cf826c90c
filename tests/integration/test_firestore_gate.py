"""local.gate in front of the real Firestore emulator: the google-cloud-firestore
client's calls counted by method, REST requests as "http", an outage that
fails calls at once and ends with the same client working again."""

from __future__ import annotations

import contextlib
import os
import random
import socket
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core import exceptions as gexc
from google.api_core.retry import Retry
from google.cloud import firestore
from google.cloud.firestore_v1.types import ListenRequest, Target

from local.gate import HTTP, Gate
from local.procs import Proc, free_ports, http_answers, stop_all, wait_until
from local.stack import JAVA_OPTIONS, MissingPrerequisite, check_prerequisites

LOGS = Path(__file__).resolve().parents[2] / "out" / "stack" / "test-firestore-gate"
HOST = "127.0.0.1"
# What a call may take to fail once the gate is shut: "at once", with slack for a loaded machine.
FAIL_FAST_S = 5.0


@pytest.fixture(scope="module")
def emulator() -> Iterator[tuple[str, int]]:
    """A Firestore emulator of this module's own (not the shared one): its
    traffic is only what these tests send through their gates."""
    try:
        found = check_prerequisites(["firestore"])
    except MissingPrerequisite as err:
        pytest.skip(f"the Firestore emulator is not available: {err}")
    (port,) = free_ports(1)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_EMULATOR_HOST")}
    env["JAVA_TOOL_OPTIONS"] = JAVA_OPTIONS
    proc = Proc(
        "firestore-gate",
        [found["firestore"], "start", f"--host={HOST}", f"--port={port}"],
        LOGS / "firestore.log",
        env=env,
    )
    proc.start()
    try:
        wait_until(proc, http_answers(f"http://{HOST}:{port}/", ok_only=True), 120, "answering on /")
        yield HOST, port
    finally:
        stop_all([proc])


@pytest.fixture
def gate(emulator: tuple[str, int]) -> Iterator[Gate]:
    (port,) = free_ports(1)
    with Gate(port, emulator).start() as g:
        yield g


def client_through(gate: Gate, project: str) -> Any:
    """A firestore.Client whose channel goes through the gate (the client reads
    the emulator address from the environment when it is made)."""
    saved = os.environ.get("FIRESTORE_EMULATOR_HOST")
    os.environ["FIRESTORE_EMULATOR_HOST"] = gate.address
    try:
        return firestore.Client(project=project)
    finally:
        if saved is None:
            os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
        else:
            os.environ["FIRESTORE_EMULATOR_HOST"] = saved


def unique_project() -> str:
    return f"gate-{random.randrange(1 << 32):08x}"


def test_client_calls_counted_by_method(gate: Gate) -> None:
    client = client_through(gate, unique_project())
    col = client.collection("things")
    n = 4

    batch = client.batch()
    for i in range(n):
        batch.set(col.document(f"d{i}"), {"n": i})
    batch.commit()
    assert gate.calls() == Counter({"Commit": 1})

    for i in range(n):
        assert col.document(f"d{i}").get().get("n") == i
    assert gate.calls() == Counter({"Commit": 1, "BatchGetDocuments": n})

    found = [d.id for d in col.where(filter=firestore.FieldFilter("n", ">=", 2)).stream()]
    assert found == ["d2", "d3"]

    @firestore.transactional  # type: ignore[untyped-decorator]
    def bump(tx: Any) -> None:
        snap = col.document("d0").get(transaction=tx)
        tx.update(col.document("d0"), {"n": snap.get("n") + 10})

    bump(client.transaction())

    @firestore.transactional  # type: ignore[untyped-decorator]
    def give_up(tx: Any) -> None:
        col.document("d1").get(transaction=tx)
        raise LookupError("rolled back")

    with pytest.raises(LookupError):
        give_up(client.transaction())

    assert col.document("d0").get().get("n") == 10
    # Observed from google-cloud-firestore: a document get is one
    # BatchGetDocuments, in a transaction too; a transaction opens with
    # BeginTransaction and ends with Commit, or Rollback when it raises.
    assert gate.calls() == Counter(
        {
            "Commit": 2,  # the batch, the transaction
            "BatchGetDocuments": n + 3,  # the gets, one per transaction, the check of d0
            "RunQuery": 1,
            "BeginTransaction": 2,
            "Rollback": 1,
        }
    )


def test_rest_requests_counted_as_http(gate: Gate, emulator: tuple[str, int]) -> None:
    project = unique_project()
    docs = f"http://{gate.address}/v1/projects/{project}/databases/(default)/documents/things"
    with urllib.request.urlopen(f"http://{gate.address}/", timeout=10) as resp:
        assert resp.status == 200
    post = urllib.request.Request(
        docs + "?documentId=a",
        data=b'{"fields": {"n": {"integerValue": "7"}}}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(post, timeout=10) as resp:
        assert resp.status == 200
    # Written over REST, read back over gRPC through the same gate.
    assert client_through(gate, project).collection("things").document("a").get().get("n") == 7
    assert gate.calls() == Counter({HTTP: 2, "BatchGetDocuments": 1})


def hold_listen(client: Any, path: str, release: threading.Event) -> Iterator[Any]:
    """A Listen call on one document, kept open until `release` is set: the
    call that is in flight when the gate shuts."""
    request = ListenRequest(
        database=client._database_string,
        add_target=Target(target_id=1, documents=Target.DocumentsTarget(documents=[path])),
    )

    def requests() -> Iterator[ListenRequest]:
        yield request
        release.wait()

    # The deadline only keeps a gate that fails to cut from hanging the test.
    stream: Iterator[Any] = client._firestore_api.listen(requests(), retry=None, timeout=20)
    return stream


def test_outage_fails_calls_fast_and_the_same_client_recovers(gate: Gate) -> None:
    client = client_through(gate, unique_project())
    doc = client.collection("things").document("kept")
    doc.set({"n": 1})
    release = threading.Event()
    try:
        listen = hold_listen(client, f"{client._database_string}/documents/things/kept", release)
        next(listen)  # the first answer: the call is open
        with socket.create_connection((HOST, gate.port)) as idle:
            t0 = time.monotonic()
            gate.close()
            assert time.monotonic() - t0 < FAIL_FAST_S

            # The open connections are cut: the call in flight fails,
            # a connection with nothing in flight sees its end.
            with pytest.raises(gexc.ServiceUnavailable):
                for _ in listen:
                    pass
            assert time.monotonic() - t0 < FAIL_FAST_S
            idle.settimeout(FAIL_FAST_S)
            with contextlib.suppress(ConnectionResetError):  # RST instead of FIN: cut as well
                assert idle.recv(1) == b""

        # New connections are refused, and a new call fails as fast.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((HOST, gate.port), timeout=FAIL_FAST_S).close()
        t0 = time.monotonic()
        with pytest.raises((gexc.ServiceUnavailable, gexc.RetryError)):
            doc.get(timeout=2, retry=Retry(initial=0.1, maximum=0.5, timeout=2))
        assert time.monotonic() - t0 < FAIL_FAST_S
    finally:
        release.set()

    before = gate.calls()
    gate.open()
    # The same client: its channel reconnects by itself (after its backoff).
    assert doc.get(retry=Retry(initial=0.1, maximum=1, timeout=60)).to_dict() == {"n": 1}
    doc.set({"n": 2})
    assert doc.get().to_dict() == {"n": 2}
    assert gate.calls() - before == Counter({"BatchGetDocuments": 2, "Commit": 1})
    assert before["Listen"] == 1


def test_stop_frees_the_port_and_ends_the_threads(emulator: tuple[str, int]) -> None:
    (port,) = free_ports(1)
    gate = Gate(port, emulator).start()
    client = client_through(gate, unique_project())
    client.collection("things").document("x").set({"n": 1})
    assert any(t.name.startswith("gate-") for t in threading.enumerate())
    gate.stop()
    gate.stop()  # idempotent
    assert not [t.name for t in threading.enumerate() if t.name.startswith("gate-")]
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((HOST, port), timeout=FAIL_FAST_S).close()
    # A new listener can take the port. SO_REUSEADDR, as the gate's own open()
    # uses: the cut connections may linger in TIME_WAIT, which is no holder.
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((HOST, port))
        s.listen()
    with pytest.raises(RuntimeError):
        gate.open()


class Echo:
    """A backend that sends back what it gets, for the forwarding itself."""

    def __init__(self) -> None:
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(1 << 16):
                conn.sendall(data)


def test_forwarding_is_byte_exact_and_a_bad_stream_is_still_forwarded() -> None:
    echo = Echo()
    try:
        with Gate(0, (HOST, echo.port)).start() as gate:
            # Not HTTP at all: counting gives up on this connection, forwarding does not.
            payload = b"\x00\xff garbage\r\n\r\n" + random.randbytes(3 << 20)
            with socket.create_connection((HOST, gate.port)) as conn:
                sender = threading.Thread(target=conn.sendall, args=(payload,))
                sender.start()
                got = bytearray()
                while len(got) < len(payload):
                    chunk = conn.recv(1 << 16)
                    assert chunk, "the gate ended the connection early"
                    got += chunk
                sender.join()
            assert bytes(got) == payload
            assert gate.calls() == Counter()
    finally:
        echo.sock.close()
