"""local.gate's request parser on bytes built here: HTTP/2 frames (HPACK from
hpack.Encoder, CONTINUATION, padding, priority, trailers) and HTTP/1.1."""

from __future__ import annotations

from collections import Counter

import hpack
import pytest

from local.gate import HTTP, PREFACE, ParseError, RequestParser

DATA, HEADERS, SETTINGS, WINDOW_UPDATE, CONTINUATION = 0x0, 0x1, 0x4, 0x8, 0x9
END_STREAM, END_HEADERS, PADDED, PRIORITY = 0x1, 0x4, 0x8, 0x20
SERVICE = "/google.firestore.v1.Firestore/"


def frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def request_headers(method: str) -> list[tuple[str, str]]:
    return [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", SERVICE + method),
        (":authority", "127.0.0.1:8080"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("x-goog-request-params", "database=projects%2Fp%2Fdatabases%2F%28default%29"),
    ]


def counted(*chunks: bytes) -> Counter[str]:
    calls: Counter[str] = Counter()
    parser = RequestParser(lambda method: calls.update([method]))
    for chunk in chunks:
        parser.feed(chunk)
    return calls


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def conversation() -> bytes:
    """A client's side of a connection: three calls, one of them split over
    HEADERS + two CONTINUATIONs with padding and priority, and trailers."""
    enc = hpack.Encoder()
    out = [PREFACE, frame(SETTINGS, 0, 0, bytes(6)), frame(WINDOW_UPDATE, 0, 0, (1 << 20).to_bytes(4, "big"))]
    # Stream 1: a plain HEADERS, then a DATA message (whose payload looks like
    # a frame header, to prove DATA is stepped over and not parsed).
    out.append(frame(HEADERS, END_HEADERS, 1, enc.encode(request_headers("BatchGetDocuments"))))
    out.append(frame(DATA, END_STREAM, 1, b"\x00\x00\x00\x00\x05" + frame(HEADERS, END_HEADERS, 99, b"x")))
    # Stream 3: padded, with priority, block split over three frames.
    block = enc.encode(request_headers("Commit"))
    pad = 7
    first = bytes([pad]) + (1).to_bytes(4, "big") + bytes([15]) + block[:5] + bytes(pad)
    out.append(frame(HEADERS, PADDED | PRIORITY, 3, first))
    out.append(frame(CONTINUATION, 0, 3, block[5:9]))
    out.append(frame(CONTINUATION, END_HEADERS, 3, block[9:]))
    out.append(frame(DATA, 0, 3, b"\x00" * 300))
    # Trailers-like HEADERS on stream 3 again: part of the same call. Its block
    # still updates the HPACK table the next block refers to.
    out.append(frame(HEADERS, END_HEADERS | END_STREAM, 3, enc.encode([("grpc-status", "0")])))
    # Stream 5: the same method again; the encoder now sends table indexes only.
    again = enc.encode(request_headers("Commit"))
    assert len(again) < len(block) / 2, "the second block should lean on the dynamic table"
    out.append(frame(HEADERS, END_HEADERS | END_STREAM, 5, again))
    return b"".join(out)


def test_calls_counted_by_method_from_one_chunk() -> None:
    assert counted(conversation()) == Counter({"BatchGetDocuments": 1, "Commit": 2})


def test_calls_counted_the_same_when_fed_byte_by_byte() -> None:
    assert counted(*byte_by_byte(conversation())) == Counter({"BatchGetDocuments": 1, "Commit": 2})


def test_padding_is_not_read_as_headers() -> None:
    enc = hpack.Encoder()
    block = enc.encode(request_headers("RunQuery"))
    # Padding made of bytes that would decode as an indexed header (0x82 = :method GET)
    # if the parser kept them in the block.
    padded = bytes([4]) + block + b"\x82\x82\x82\x82"
    calls = counted(PREFACE, frame(HEADERS, PADDED | END_HEADERS, 1, padded))
    assert calls == Counter({"RunQuery": 1})


def test_a_frame_inside_a_header_block_is_a_parse_error() -> None:
    enc = hpack.Encoder()
    block = enc.encode(request_headers("Rollback"))
    parser = RequestParser(lambda method: None)
    parser.feed(PREFACE + frame(HEADERS, 0, 1, block[:3]))
    with pytest.raises(ParseError):
        parser.feed(frame(DATA, 0, 1, b"\x00" * 5))


def test_garbage_header_block_is_a_parse_error() -> None:
    parser = RequestParser(lambda method: None)
    with pytest.raises(ParseError):
        parser.feed(PREFACE + frame(HEADERS, END_HEADERS, 1, b"\xff\xff\xff\xff\xff\xff"))


def test_http1_requests_counted_with_bodies_stepped_over() -> None:
    body = b"GET /fake HTTP/1.1\r\nHost: x\r\n\r\n"  # a body that looks like a request
    chunk = b"POST /also-fake HTTP/1.1\r\n\r\n"
    stream = (
        b"GET /emulator/v1/projects/p/databases/(default)/documents HTTP/1.1\r\nHost: h\r\n\r\n"
        + b"POST /v1/projects/p/databases/(default)/documents:commit HTTP/1.1\r\n"
        + b"Content-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
        + b"PATCH /v1/x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(chunk):x};ext=1\r\n".encode()
        + chunk
        + b"\r\n0\r\nX-Trailer: 1\r\n\r\n"
        + b"DELETE /emulator/v1/projects/p/databases/(default)/documents HTTP/1.1\r\n\r\n"
    )
    assert counted(stream) == Counter({HTTP: 4})
    assert counted(*byte_by_byte(stream)) == Counter({HTTP: 4})


def test_neither_http2_nor_http1_is_a_parse_error() -> None:
    parser = RequestParser(lambda method: None)
    with pytest.raises(ParseError):
        parser.feed(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not a request line\r\n\r\n")
