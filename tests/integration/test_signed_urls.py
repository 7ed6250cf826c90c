"""The signed-URL front (local.signed_urls) refuses what Cloud Storage refuses.

One stack for the module: fake-gcs-server and the verifying front before it.
URLs are signed by google-cloud-storage with the stack's key, as the functions
sign them, and sent with plain `requests`, as the mobile app sends them. Every
refusal also checks, through fake-gcs directly, that nothing was stored.
"""

from __future__ import annotations

import http.client
import threading
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from google.cloud.storage import _signing
from google.oauth2 import service_account

from local.stack import Stack, write_service_account_key

MAX = 1024
JPEG = "image/jpeg"
BODY = b"\xff\xd8\xff\xe0 not really a jpeg"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with Stack(
        components=["storage", "signed_urls"], log_dir=tmp_path_factory.mktemp("stack"), quiet=True
    ) as s:
        yield s


@pytest.fixture(scope="module")
def client(stack: Stack) -> Any:
    return stack.storage_client()


@pytest.fixture(scope="module")
def credentials(stack: Stack) -> Any:
    assert stack.signing_key_file
    return service_account.Credentials.from_service_account_file(stack.signing_key_file)  # type: ignore[no-untyped-call]


@pytest.fixture
def name() -> str:
    # Its own folder per test, so "nothing stored" is a listing of that folder.
    return f"uploads/{uuid.uuid4().hex}/selfie.jpg"


def upload_headers(low: int = 1, high: int = MAX) -> dict[str, str]:
    """What the app's upload URLs sign: a size range and create-only."""
    return {"x-goog-content-length-range": f"{low},{high}", "x-goog-if-generation-match": "0"}


def sign(
    stack: Stack,
    client: Any,
    credentials: Any,
    name: str,
    method: str = "PUT",
    headers: Mapping[str, str] | None = None,
    content_type: str | None = JPEG,
    ttl: timedelta = timedelta(minutes=10),
) -> str:
    """A V4 URL exactly as the production signing code makes it."""
    blob = client.bucket(stack.uploads_bucket).blob(name)
    return str(
        blob.generate_signed_url(
            version="v4",
            method=method,
            expiration=ttl,
            content_type=content_type,
            headers=dict(headers) if headers else None,
            credentials=credentials,
            api_access_endpoint=stack.signed_urls_url,
        )
    )


def sign_at(stack: Stack, credentials: Any, name: str, when: datetime, ttl_s: int = 60) -> str:
    """A GET URL signed as if at `when`, through the library's own V4 signer
    (its test-only timestamp argument), so that expiry needs no sleeping."""
    resource = f"/{stack.uploads_bucket}/{urllib.parse.quote(name, safe='/~')}"
    return str(
        _signing.generate_signed_url_v4(
            credentials,
            resource,
            expiration=ttl_s,
            api_access_endpoint=stack.signed_urls_url,
            method="GET",
            _request_timestamp=when.strftime("%Y%m%dT%H%M%SZ"),
        )
    )


def put(
    url: str, body: Any = BODY, content_type: str | None = JPEG, headers: Mapping[str, str] | None = None
) -> requests.Response:
    """A plain HTTP PUT, as the app sends one."""
    sent = dict(headers or {})
    if content_type:
        sent["Content-Type"] = content_type
    return requests.put(url, data=body, headers=sent, timeout=10)


def put_upload(
    url: str, body: Any = BODY, content_type: str = JPEG, extra: Mapping[str, str] | None = None
) -> requests.Response:
    """A PUT with the headers an upload URL signs."""
    return put(url, body, content_type, {**upload_headers(), **(extra or {})})


def stored(client: Any, stack: Stack, name: str) -> list[str]:
    folder = name.rsplit("/", 1)[0] + "/"
    return [b.name for b in client.list_blobs(stack.uploads_bucket, prefix=folder)]


def assert_refused(resp: requests.Response, status: int, code: str) -> ET.Element:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/xml")
    assert resp.content.startswith(b"<?xml version='1.0' encoding='UTF-8'?><Error>")
    error = ET.fromstring(resp.content)
    assert error.tag == "Error" and error.findtext("Code") == code, resp.text
    assert error.findtext("Message")
    return error


def with_param(url: str, param: str, value: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, value if k == param else v) for k, v in urllib.parse.parse_qsl(parts.query)]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query, safe="/")))


# --- accepted ---------------------------------------------------------------------


def test_health(stack: Stack) -> None:
    assert requests.get(f"{stack.signed_urls_url}/healthz", timeout=5).status_code == 200


def test_signed_put_stores_exactly_the_bytes_with_the_content_type(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    assert put_upload(url).status_code == 200
    blob = client.bucket(stack.uploads_bucket).get_blob(name)
    assert blob.download_as_bytes() == BODY and blob.content_type == JPEG
    assert stored(client, stack, name) == [name]


def test_signed_get_and_head_serve_the_object(stack: Stack, client: Any, credentials: Any, name: str) -> None:
    client.bucket(stack.uploads_bucket).blob(name).upload_from_string(BODY, content_type=JPEG)
    url = sign(stack, client, credentials, name, method="GET", content_type=None)
    resp = requests.get(url, timeout=10)
    assert resp.status_code == 200 and resp.content == BODY
    assert resp.headers["Content-Type"] == JPEG
    head = requests.head(sign(stack, client, credentials, name, method="HEAD", content_type=None), timeout=10)
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == str(len(BODY))


def test_a_chunked_body_inside_the_range_is_stored(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    resp = put_upload(url, body=(BODY[i : i + 5] for i in range(0, len(BODY), 5)))
    assert resp.status_code == 200, resp.text
    assert client.bucket(stack.uploads_bucket).blob(name).download_as_bytes() == BODY


def test_a_percent_encoded_name_round_trips(stack: Stack, client: Any, credentials: Any) -> None:
    name = f"uploads/user@example.com:{uuid.uuid4().hex}/selfie.jpg"
    url = sign(stack, client, credentials, name, headers=upload_headers())
    assert "%40" in url and "%3A" in url
    assert put_upload(url).status_code == 200
    assert stored(client, stack, name) == [name]
    get_url = sign(stack, client, credentials, name, method="GET", content_type=None)
    assert requests.get(get_url, timeout=10).content == BODY
    # The same object, however the client encodes the path.
    plain = get_url.replace("%40", "@").replace("%3A", ":", 1)
    assert requests.get(plain, timeout=10).content == BODY


# --- refused: authentication -----------------------------------------------------------


def test_an_unsigned_request_is_anonymous_and_denied(stack: Stack, client: Any, name: str) -> None:
    url = f"{stack.signed_urls_url}/{stack.uploads_bucket}/{name}"
    error = assert_refused(put(url), 403, "AccessDenied")
    assert "storage.objects.create" in (error.findtext("Details") or "")
    assert_refused(requests.get(url, timeout=10), 403, "AccessDenied")
    assert stored(client, stack, name) == []


def test_a_tampered_signature_does_not_match(stack: Stack, client: Any, credentials: Any, name: str) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    digit = url[-1]
    tampered = url[:-1] + ("0" if digit != "0" else "1")
    assert_refused(put_upload(tampered), 403, "SignatureDoesNotMatch")
    assert stored(client, stack, name) == []


def test_a_url_signed_by_another_key_is_refused(stack: Stack, client: Any, name: str, tmp_path: Path) -> None:
    # Same project, so the same account e-mail, but a key this host does not know.
    for i, project in enumerate((stack.project, "someone-else")):
        key = write_service_account_key(tmp_path / f"other-{i}.json", project)
        other = service_account.Credentials.from_service_account_file(str(key))  # type: ignore[no-untyped-call]
        url = sign(stack, client, other, name, headers=upload_headers())
        assert_refused(put_upload(url), 403, "SignatureDoesNotMatch")
    assert stored(client, stack, name) == []


def test_an_expired_url_is_refused(stack: Stack, client: Any, credentials: Any, name: str) -> None:
    client.bucket(stack.uploads_bucket).blob(name).upload_from_string(BODY, content_type=JPEG)
    url = sign_at(stack, credentials, name, datetime.now(UTC) - timedelta(minutes=2), ttl_s=60)
    error = assert_refused(requests.get(url, timeout=10), 400, "ExpiredToken")
    assert "expired at" in (error.findtext("Details") or "")
    # Still valid a moment before its end: the window is X-Goog-Date + X-Goog-Expires.
    fresh = sign_at(stack, credentials, name, datetime.now(UTC) - timedelta(seconds=50), ttl_s=60)
    assert requests.get(fresh, timeout=10).content == BODY


def test_a_url_from_the_future_is_refused_beyond_the_allowed_skew(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    client.bucket(stack.uploads_bucket).blob(name).upload_from_string(BODY, content_type=JPEG)
    later = sign_at(stack, credentials, name, datetime.now(UTC) + timedelta(minutes=20))
    assert_refused(requests.get(later, timeout=10), 403, "AccessDenied")
    # Cloud Storage accepts a signature from 15 minutes before its X-Goog-Date.
    soon = sign_at(stack, credentials, name, datetime.now(UTC) + timedelta(minutes=10))
    assert requests.get(soon, timeout=10).status_code == 200


def test_an_expiry_over_seven_days_is_malformed(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = with_param(
        sign(stack, client, credentials, name, headers=upload_headers()), "X-Goog-Expires", "604801"
    )
    error = assert_refused(put_upload(url), 400, "MalformedSecurityHeader")
    assert error.findtext("ParameterName") == "X-Goog-Expires"
    assert stored(client, stack, name) == []


# --- refused: the request is not the one signed -------------------------------------------


def test_another_method_than_signed_does_not_match(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    get_url = sign(stack, client, credentials, name, method="GET", content_type=None)
    assert_refused(put(get_url, content_type=None), 403, "SignatureDoesNotMatch")
    assert stored(client, stack, name) == []
    client.bucket(stack.uploads_bucket).blob(name).upload_from_string(BODY, content_type=JPEG)
    put_url = sign(stack, client, credentials, name, headers=upload_headers())
    resp = requests.delete(put_url, headers={"Content-Type": JPEG, **upload_headers()}, timeout=10)
    assert_refused(resp, 403, "SignatureDoesNotMatch")
    assert stored(client, stack, name) == [name]


def test_another_content_type_than_signed_does_not_match(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    assert_refused(put_upload(url, content_type="text/html"), 403, "SignatureDoesNotMatch")
    assert stored(client, stack, name) == []


def test_a_missing_signed_header_is_malformed(stack: Stack, client: Any, credentials: Any, name: str) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    # Cloud Storage names the header: 400 MalformedSecurityHeader, not a signature mismatch.
    without_range = put(url, headers={"x-goog-if-generation-match": "0"})
    error = assert_refused(without_range, 400, "MalformedSecurityHeader")
    assert error.findtext("ParameterName") == "x-goog-content-length-range"
    without_type = put(url, content_type=None, headers=upload_headers())
    error = assert_refused(without_type, 400, "MalformedSecurityHeader")
    assert error.findtext("ParameterName") == "content-type"
    assert stored(client, stack, name) == []


def test_a_changed_length_range_does_not_match(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    resp = put_upload(url, extra={"x-goog-content-length-range": f"1,{MAX * 1000}"})
    assert_refused(resp, 403, "SignatureDoesNotMatch")
    assert stored(client, stack, name) == []


def test_an_unsigned_extension_header_is_malformed(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    error = assert_refused(
        put_upload(url, extra={"x-goog-meta-owner": "mallory"}), 400, "MalformedSecurityHeader"
    )
    assert error.findtext("ParameterName") == "x-goog-meta-owner"
    assert stored(client, stack, name) == []


# --- refused: the body is outside the signed length range ---------------------------------


def test_a_body_over_the_range_is_refused_by_its_content_length(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    assert_refused(put_upload(url, body=b"x" * (MAX + 1)), 400, "EntityTooLarge")
    assert put_upload(url, body=b"x" * MAX).status_code == 200  # MAX itself is inside
    blob = client.bucket(stack.uploads_bucket).blob(name)
    assert blob.download_as_bytes() == b"x" * MAX


def test_a_chunked_body_over_the_range_is_refused(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    chunks = (b"x" * 256 for _ in range(64))  # 16 KiB, no Content-Length
    assert_refused(put_upload(url, body=chunks), 400, "EntityTooLarge")
    assert stored(client, stack, name) == []


def raw_put(url: str, headers: Mapping[str, str], first_bytes: bytes) -> http.client.HTTPResponse:
    """Headers and the start of a body, then wait for the answer: the front must
    answer before the body is complete."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
    conn.putrequest("PUT", f"{parts.path}?{parts.query}", skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders(first_bytes)
    return conn.getresponse()


def test_an_oversized_length_is_refused_before_any_body_is_read(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    headers = {"Content-Type": JPEG, "Content-Length": str(10 * MAX), **upload_headers()}
    resp = raw_put(url, headers, b"")  # not a byte of the body sent
    assert resp.status == 400 and b"<Code>EntityTooLarge</Code>" in resp.read()
    assert stored(client, stack, name) == []


def test_a_chunked_body_is_given_up_once_past_the_range(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    headers = {"Content-Type": JPEG, "Transfer-Encoding": "chunked", **upload_headers()}
    one_chunk_too_many = f"{MAX + 1:x}\r\n".encode() + b"x" * (MAX + 1) + b"\r\n"  # and no last chunk
    resp = raw_put(url, headers, one_chunk_too_many)
    assert resp.status == 400 and b"<Code>EntityTooLarge</Code>" in resp.read()
    assert stored(client, stack, name) == []


def test_an_empty_body_is_under_the_range(stack: Stack, client: Any, credentials: Any, name: str) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    assert_refused(put_upload(url, body=b""), 400, "EntityTooSmall")
    assert stored(client, stack, name) == []


# --- refused: create-only ------------------------------------------------------------------


def test_a_second_create_only_put_fails_its_precondition(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    assert put_upload(url).status_code == 200
    assert_refused(put_upload(url, body=b"second"), 412, "PreconditionFailed")
    assert client.bucket(stack.uploads_bucket).blob(name).download_as_bytes() == BODY
    assert stored(client, stack, name) == [name]


def test_concurrent_create_only_puts_have_exactly_one_winner(
    stack: Stack, client: Any, credentials: Any, name: str
) -> None:
    url = sign(stack, client, credentials, name, headers=upload_headers())
    start = threading.Barrier(10)
    statuses: dict[int, int] = {}

    def attempt(i: int) -> None:
        start.wait()
        statuses[i] = put_upload(url, body=f"attempt {i}".encode()).status_code

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    winners = [i for i, status in statuses.items() if 200 <= status < 300]
    assert len(statuses) == 10 and len(winners) == 1, statuses
    assert sorted(statuses.values()) == [200] + [412] * 9
    stored_body = client.bucket(stack.uploads_bucket).blob(name).download_as_bytes()
    assert stored_body == f"attempt {winners[0]}".encode()
