"""A TCP gate in front of the Firestore emulator: counts RPCs, fakes outages.

The load test (local/load.py) points FIRESTORE_EMULATOR_HOST at a Gate
instead of the emulator. Every connection is forwarded byte for byte to the
emulator by a pair of threads; on the way the client→server bytes are read
as HTTP/2 (what gRPC speaks, in cleartext to the emulator) to count calls by
method, or as HTTP/1.1 (the emulator's REST endpoints) to count requests.

close() is the outage: the listening socket goes away, so a new connection
is refused at once, and every open connection is cut both ways, so a call in
flight fails with UNAVAILABLE instead of hanging. open() listens again on the
same port; a gRPC channel reconnects by itself, so the same client works
again. Loopback only, threads only: it lives inside the test process.

Counting is best effort and never in the way: a connection whose bytes do not
parse is still forwarded, just no longer counted (logged once to stderr).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import sys
import threading
from collections import Counter
from collections.abc import Callable
from types import TracebackType

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HTTP = "http"  # the counter's key for an HTTP/1.1 request
UNKNOWN = "?"  # a new HTTP/2 stream whose headers carry no :path

FRAME_HEADER = 9
HEADERS = 0x1
CONTINUATION = 0x9
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY = 0x20
PRIORITY_FIELDS = 5  # exclusive bit + stream dependency (4 bytes), weight (1)

MAX_HTTP1_HEAD = 1 << 16  # bytes of request line + headers before we give up
RECV_BYTES = 1 << 16
CONNECT_TIMEOUT_S = 5.0

Record = Callable[[str], None]


class ParseError(ValueError):
    """The bytes are not the protocol we took them for."""


class _Http2:
    """Client→server HTTP/2 after the preface: one call per new stream's HEADERS."""

    def __init__(self, record: Record) -> None:
        self._record = record
        # One decoder for the connection: HPACK's dynamic table is built up by
        # every header block in turn, trailers included.
        self._decoder = hpack.Decoder()
        # We only watch, so the peer's SETTINGS decide the limits, not us:
        # accept whatever table size and header list the client uses.
        self._decoder.max_allowed_table_size = 1 << 32
        self._decoder.max_header_list_size = 1 << 32
        self._buf = bytearray()
        self._skip = 0  # payload bytes of a frame we do not read, still to come
        self._block: bytearray | None = None  # a header block awaiting END_HEADERS
        self._block_stream = 0
        self._block_opens = False
        self._last_stream = 0  # client streams open with ever higher ids

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while True:
            if self._skip:
                n = min(self._skip, len(buf) - pos)
                pos += n
                self._skip -= n
                if self._skip:
                    break
            if len(buf) - pos < FRAME_HEADER:
                break
            length = int.from_bytes(buf[pos : pos + 3], "big")
            ftype, flags = buf[pos + 3], buf[pos + 4]
            stream = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            if ftype not in (HEADERS, CONTINUATION) and self._block is None:
                # DATA, SETTINGS, PING, WINDOW_UPDATE...: stepped over unread,
                # so a large message is never buffered here.
                pos += FRAME_HEADER
                self._skip = length
                continue
            if len(buf) - pos < FRAME_HEADER + length:
                break
            payload = bytes(buf[pos + FRAME_HEADER : pos + FRAME_HEADER + length])
            pos += FRAME_HEADER + length
            self._frame(ftype, flags, stream, payload)
        del buf[:pos]

    def _frame(self, ftype: int, flags: int, stream: int, payload: bytes) -> None:
        if self._block is not None:
            # RFC 9113 §6.10: nothing may come between a header block's frames.
            if ftype != CONTINUATION or stream != self._block_stream:
                raise ParseError(f"frame type {ftype:#x} on stream {stream} inside a header block")
            self._block += payload
        elif ftype == CONTINUATION:
            raise ParseError(f"CONTINUATION on stream {stream} without HEADERS")
        else:
            if stream == 0:
                raise ParseError("HEADERS on stream 0")
            self._block = bytearray(_header_fragment(flags, payload))
            self._block_stream = stream
            self._block_opens = stream > self._last_stream
            self._last_stream = max(self._last_stream, stream)
        if flags & END_HEADERS:
            block, self._block = bytes(self._block), None
            self._end_block(block)

    def _end_block(self, block: bytes) -> None:
        try:
            headers = self._decoder.decode(block, raw=True)
        except hpack.HPACKError as err:
            raise ParseError(f"HPACK: {err}") from err
        if not self._block_opens:
            return  # trailers, or headers on a stream already counted
        path = next((bytes(v) for k, v in headers if bytes(k) == b":path"), None)
        if path is None:
            self._record(UNKNOWN)
            return
        # "/google.firestore.v1.Firestore/Commit" → "Commit"
        self._record(path.split(b"?", 1)[0].rsplit(b"/", 1)[-1].decode("latin-1") or UNKNOWN)


def _header_fragment(flags: int, payload: bytes) -> bytes:
    """A HEADERS frame's header block fragment, without padding or priority."""
    start, end = 0, len(payload)
    if flags & PADDED:
        if not payload:
            raise ParseError("PADDED HEADERS without a pad length")
        start, end = 1, end - payload[0]
    if flags & PRIORITY:
        start += PRIORITY_FIELDS
    if start > end:
        raise ParseError("HEADERS padding or priority longer than the frame")
    return payload[start:end]


class _Http1:
    """Client→server HTTP/1.1: one count per request, bodies stepped over."""

    def __init__(self, record: Record) -> None:
        self._record = record
        self._buf = bytearray()
        self._state = "head"  # head | body | size | chunk | trailer
        self._remaining = 0  # body or chunk bytes (chunks with their CRLF) to skip

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        while pos < len(buf):
            if self._state in ("body", "chunk"):
                n = min(self._remaining, len(buf) - pos)
                pos += n
                self._remaining -= n
                if self._remaining:
                    break
                self._state = "head" if self._state == "body" else "size"
                continue
            if self._state == "head":
                while buf.startswith(b"\r\n", pos):  # RFC 9112 §2.2: CRLFs before a request
                    pos += 2
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > MAX_HTTP1_HEAD:
                        raise ParseError("HTTP/1.1 request head too long")
                    break
                self._head(bytes(buf[pos:end]))
                pos = end + 4
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if len(buf) - pos > MAX_HTTP1_HEAD:
                    raise ParseError("HTTP/1.1 chunk line too long")
                break
            line = bytes(buf[pos:end])
            pos = end + 2
            if self._state == "size":
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError as err:
                    raise ParseError(f"bad chunk size {line[:40]!r}") from err
                self._state, self._remaining = ("trailer", 0) if size == 0 else ("chunk", size + 2)
            elif not line:  # the empty line after the trailers ends the request
                self._state = "head"
        del buf[:pos]

    def _head(self, head: bytes) -> None:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise ParseError(f"not an HTTP/1.1 request line: {lines[0][:60]!r}")
        self._record(HTTP)
        length = 0
        chunked = False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value.strip())
                except ValueError as err:
                    raise ParseError(f"bad Content-Length {value[:40]!r}") from err
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        # RFC 9112 §6.3: chunked wins over Content-Length; neither means no body.
        if chunked:
            self._state = "size"
        elif length:
            self._state, self._remaining = "body", length
        else:
            self._state = "head"


class RequestParser:
    """Reads one connection's client→server bytes and records each call.

    HTTP/2 when the bytes start with the connection preface (each new stream
    is a call, recorded under the last segment of its :path), HTTP/1.1
    otherwise (each request recorded as HTTP). feed() raises ParseError when
    the bytes stop making sense; what was recorded until then stays.
    """

    def __init__(self, record: Record) -> None:
        self._record = record
        self._start = bytearray()
        self._proto: _Http2 | _Http1 | None = None

    def feed(self, data: bytes) -> None:
        if self._proto is None:
            self._start += data
            seen = bytes(self._start[: len(PREFACE)])
            if not PREFACE.startswith(seen):
                self._proto, data = _Http1(self._record), bytes(self._start)
            elif len(self._start) >= len(PREFACE):
                self._proto, data = _Http2(self._record), bytes(self._start[len(PREFACE) :])
            else:
                return  # still a prefix of the preface: wait for more
            self._start = bytearray()
        self._proto.feed(data)


def _abort(sock: socket.socket | None) -> None:
    """Cut a socket now: wakes the threads blocked on it, and its close resets."""
    if sock is None:
        return
    with contextlib.suppress(OSError):
        # Linger 0: the close that follows sends RST, not a polite goodbye.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def _no_delay(sock: socket.socket) -> None:
    """Small gRPC frames go out at once instead of waiting on Nagle's algorithm."""
    with contextlib.suppress(OSError):  # a peer already gone shows up in recv/send instead
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Link:
    """One client connection and its connection to the backend.

    The owner thread connects to the backend, starts the backend→client pump,
    pumps client→server itself, then waits for the other pump and closes both
    sockets: a socket is closed only once no thread can still use it.
    """

    def __init__(self, gate: Gate, client: socket.socket) -> None:
        self._gate = gate
        self.client = client
        self.backend: socket.socket | None = None
        self._lock = threading.Lock()
        self._cut = False
        self._parser: RequestParser | None = RequestParser(gate._record)
        self.owner = threading.Thread(target=self._run, name=f"gate-link-{client.fileno()}", daemon=True)

    def cut(self) -> None:
        with self._lock:
            self._cut = True
            backend = self.backend
        _abort(self.client)
        _abort(backend)

    def _run(self) -> None:
        down: threading.Thread | None = None
        try:
            _no_delay(self.client)
            try:
                backend = socket.create_connection(self._gate._backend, timeout=CONNECT_TIMEOUT_S)
            except OSError:
                _abort(self.client)  # backend down: the client sees a reset, as without a gate
                return
            backend.settimeout(None)
            _no_delay(backend)
            with self._lock:
                self.backend = backend
                if self._cut:  # close() came while we were connecting
                    _abort(backend)
                    return
                down = threading.Thread(
                    target=self._pump,
                    args=(backend, self.client, False),
                    name=f"{self.owner.name}-down",
                    daemon=True,
                )
                down.start()
            self._pump(self.client, backend, True)
        finally:
            if down is not None:
                down.join()
            self.client.close()
            if self.backend is not None:
                self.backend.close()
            self._gate._forget(self)

    def _pump(self, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        while True:
            try:
                data = src.recv(RECV_BYTES)
            except OSError:
                self.cut()  # reset (or cut by close()): reset the other side too
                return
            if not data:
                # A clean end of one direction is passed on as such.
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            if upstream and self._parser is not None:
                # Parsed before it is sent, so a call is counted before its
                # answer can reach the client.
                try:
                    self._parser.feed(data)
                except Exception as err:  # counting must never break forwarding
                    self._parser = None
                    print(
                        f"gate {self._gate.address}: stopped counting a connection: {err!r}", file=sys.stderr
                    )
            try:
                dst.sendall(data)
            except OSError:
                self.cut()
                return


class Gate:
    """A loopback TCP proxy to `backend` that counts calls and can be shut."""

    def __init__(self, listen_port: int, backend: tuple[str, int], host: str = "127.0.0.1") -> None:
        self._host = host
        self._port = listen_port  # 0 picks a free port at start(); open() keeps it
        self._backend = backend
        self._lock = threading.Lock()
        self._calls: Counter[str] = Counter()
        self._links: set[_Link] = set()
        self._listener: socket.socket | None = None
        self._accepter: threading.Thread | None = None
        self._wake: socket.socket | None = None  # written to stop the accept thread
        self._stopped = False

    @property
    def address(self) -> str:
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def calls(self) -> Counter[str]:
        with self._lock:
            return Counter(self._calls)

    def start(self) -> Gate:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the gate is stopped for good")
            if self._listener is not None:
                raise RuntimeError("the gate is already started")
            self._listen()
        return self

    def open(self) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("the gate is stopped for good")
            if self._listener is None:
                self._listen()

    def close(self) -> None:
        with self._lock:
            listener, accepter, wake = self._listener, self._accepter, self._wake
            self._listener = self._accepter = self._wake = None
        if listener is not None and accepter is not None and wake is not None:
            wake.send(b"x")
            accepter.join()
            wake.close()
            # Closing the listener also resets connections still in its backlog.
            listener.close()
        # The accept thread is gone, so no link can be added from here on.
        with self._lock:
            links = list(self._links)
        for link in links:
            link.cut()
        for link in links:
            link.owner.join()

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self.close()

    def __enter__(self) -> Gate:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- internals ------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # open() right after close(): the cut connections may still hold
            # the port in TIME_WAIT.
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(128)
        except OSError:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        wake_r, wake_w = socket.socketpair()
        accepter = threading.Thread(
            target=self._accept, args=(listener, wake_r), name=f"gate-accept-{self._port}", daemon=True
        )
        self._listener, self._accepter, self._wake = listener, accepter, wake_w
        accepter.start()

    def _accept(self, listener: socket.socket, wake: socket.socket) -> None:
        with selectors.DefaultSelector() as sel, wake:
            sel.register(listener, selectors.EVENT_READ)
            sel.register(wake, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in sel.select()}
                if wake in ready:
                    return
                try:
                    client, _ = listener.accept()
                except OSError:
                    continue  # e.g. the client gave up before we accepted
                link = _Link(self, client)
                with self._lock:
                    self._links.add(link)
                link.owner.start()

    def _record(self, method: str) -> None:
        with self._lock:
            self._calls[method] += 1

    def _forget(self, link: _Link) -> None:
        with self._lock:
            self._links.discard(link)
