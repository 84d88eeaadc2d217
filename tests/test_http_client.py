"""HttpClient against real loopback servers: what it retries, how long it waits, when it gives up.

The Socrata test server gives the faults a portal gives (429, 5xx, 202, dropped connections, cut
bodies, HTML error pages); a scripted stub gives what it cannot (403, 401, HTTP-date
Retry-After, a server that never answers in time, extra headers).
"""

from __future__ import annotations

import csv
import io
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from flows.errors import SourceError
from flows.sources.http import MAX_RETRY_AFTER_S, HttpClient, retry_after_seconds
from tests.http_stub import Reply, ScriptedServer
from tests.socrata import SocrataServer, generate_rows

DATASET = "tazs-3rd5"
JSON_PATH = f"/resource/{DATASET}.json"
CSV_PATH = f"/resource/{DATASET}.csv"
PAGE = {"$limit": "5", "$order": "offense_id"}


@pytest.fixture(scope="module")
def server():
    with SocrataServer(generate_rows(["2024-01"], 40, seed=3)) as srv:
        yield srv


@pytest.fixture
def source(server: SocrataServer):
    """The module's server with no faults and an empty request log for each test."""
    server.faults.reset()
    server.faults.retry_after = "1"
    server.faults.error_status = 500
    server.reset_log()
    yield server
    server.faults.reset()


def client_for(url: str, **options) -> HttpClient:
    settings = {"attempts": 4, "backoff_s": 0.01, "timeout_s": 5.0, **options}
    return HttpClient(url, **settings)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_429_waits_as_long_as_retry_after_says_then_succeeds(source):
    # backoff 0: without Retry-After the retry would be immediate
    source.faults.throttle_every = 1
    source.faults.max_faults = 1
    source.faults.retry_after = "0.6"
    client = client_for(source.url, backoff_s=0.0)
    started = time.monotonic()
    rows = client.get_json(JSON_PATH, PAGE)
    elapsed = time.monotonic() - started
    assert len(rows) == 5
    assert 0.6 <= elapsed < 1.5, elapsed
    assert source.faults.kinds() == ["throttle"]
    assert [r.status for r in source.requests_log] == [429, 200]
    assert client.requests_made == 2


def test_retry_after_replaces_the_backoff_instead_of_adding_to_it(source):
    # a 5 s backoff would make this take 2.5-5 s; Retry-After 0.2 must win
    source.faults.throttle_every = 1
    source.faults.max_faults = 2
    source.faults.retry_after = "0.2"
    client = client_for(source.url, backoff_s=5.0)
    started = time.monotonic()
    assert len(client.get_json(JSON_PATH, PAGE)) == 5
    elapsed = time.monotonic() - started
    assert 0.4 <= elapsed < 1.5, elapsed
    assert [r.status for r in source.requests_log] == [429, 429, 200]


def test_an_http_date_retry_after_is_honoured():
    when = datetime.now(UTC) + timedelta(seconds=2)
    throttled = Reply(
        429,
        b'{"message": "slow down"}',
        headers=(("Retry-After", format_datetime(when, usegmt=True)),),
    )
    with ScriptedServer([throttled, Reply(200, b'[{"n": "1"}]')]) as stub:
        client = client_for(stub.url, backoff_s=0.0)
        assert client.get_json("/x.json") == [{"n": "1"}]
        gap = stub.seen[1].at - stub.seen[0].at
    # the date has whole seconds: 1-2 s from now when it was sent
    assert 0.9 <= gap < 3.0, gap


def test_retry_after_seconds_parses_both_forms_and_caps_them():
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0.25") == 0.25
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds("86400") == MAX_RETRY_AFTER_S
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(past) == 0.0
    future = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    waited = retry_after_seconds(future)
    assert waited is not None
    assert 28.0 <= waited <= 30.0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 408])
def test_server_errors_are_retried_then_the_data_is_returned(source, status):
    source.faults.error_every = 1
    source.faults.error_status = status
    source.faults.max_faults = 2
    client = client_for(source.url)
    rows = client.get_json(JSON_PATH, PAGE)
    assert len(rows) == 5
    assert [r.status for r in source.requests_log] == [status, status, 200]
    assert client.requests_made == 3


def test_a_202_still_processing_is_retried(source):
    source.faults.accepted_every = 1
    source.faults.max_faults = 1
    client = client_for(source.url)
    assert len(client.get_json(JSON_PATH, PAGE)) == 5
    assert [r.status for r in source.requests_log] == [202, 200]


def test_a_dropped_connection_is_retried_then_succeeds(source):
    source.faults.drop_every = 1
    source.faults.max_faults = 2
    client = client_for(source.url)
    body = client.get(CSV_PATH, PAGE, expect="csv").body
    records = list(csv.reader(io.StringIO(body.decode())))
    assert len(records) == 6  # header and 5 rows: the whole page, not the cut one
    assert {len(record) for record in records} == {len(records[0])}
    assert source.faults.kinds() == ["drop", "drop"]
    assert source.request_count == 3


def test_requests_made_counts_dropped_connections_too(source):
    source.faults.drop_every = 1
    source.faults.max_faults = 2
    client = client_for(source.url)
    client.get(CSV_PATH, PAGE, expect="csv")
    assert client.requests_made == source.request_count == 3


def test_a_body_cut_short_fails_the_check_and_is_retried(source):
    source.faults.truncate_every = 1
    source.faults.max_faults = 1
    client = client_for(source.url)
    rows = client.get_json(JSON_PATH, PAGE)
    assert len(rows) == 5
    assert source.faults.kinds() == ["truncate"]
    assert client.requests_made == 2


def test_gives_up_after_attempts_with_one_sentence_naming_the_portal(source):
    source.faults.fail_always = True
    client = client_for(source.url, attempts=3)
    with pytest.raises(SourceError) as caught:
        client.get_json(JSON_PATH, PAGE)
    assert str(caught.value) == (
        f"The source at {source.url} kept failing (answered HTTP 503) after 3 attempts: "
        "check that it is reachable, or try again later."
    )
    assert source.request_count == 3
    assert client.requests_made == 3


def test_an_unreachable_portal_fails_after_attempts_each_counted():
    url = f"http://127.0.0.1:{closed_port()}"
    client = client_for(url, attempts=2)
    with pytest.raises(SourceError) as caught:
        client.get_json(JSON_PATH)
    assert str(caught.value) == (
        f"The source at {url} kept failing (connection failed (ConnectionError)) after 2 "
        "attempts: check that it is reachable, or try again later."
    )
    # requests_made counts attempts, answered or not
    assert client.requests_made == 2


def test_a_server_that_does_not_answer_in_time_is_a_timeout_retried_then_given_up():
    with ScriptedServer([Reply(200, b"[]", delay_s=1.0)]) as stub:
        client = client_for(stub.url, attempts=2, timeout_s=0.2)
        started = time.monotonic()
        with pytest.raises(
            SourceError,
            match=r"kept failing \(connection failed \(ReadTimeout\)\) after 2 attempts",
        ):
            client.get_json("/slow.json")
        assert time.monotonic() - started < 1.5
        assert len(stub.seen) == 2


@pytest.mark.parametrize(("path", "expect"), [(JSON_PATH, "json"), (CSV_PATH, "csv")])
def test_a_200_html_page_is_retried_and_never_returned_as_data(source, path, expect):
    source.faults.html_every = 1
    source.faults.max_faults = 1
    client = client_for(source.url)
    response = client.get(path, PAGE, expect=expect)
    assert expect in response.content_type
    assert b"<html" not in response.body.lower()
    assert [r.status for r in source.requests_log] == [200, 200]
    assert source.faults.kinds() == ["html"]


def test_html_on_every_attempt_is_an_error_not_data(source):
    source.faults.html_every = 1
    client = client_for(source.url, attempts=3)
    with pytest.raises(SourceError) as caught:
        client.get(CSV_PATH, PAGE, expect="csv")
    assert str(caught.value) == (
        f"The source at {source.url} kept failing (answered 200 with text/html; charset=UTF-8) "
        "after 3 attempts: check that it is reachable, or try again later."
    )
    assert source.request_count == 3


def test_404_raises_at_once_naming_the_settings(source):
    client = client_for(source.url)
    with pytest.raises(SourceError) as caught:
        client.get_json("/resource/abcd-1234.json", {"$limit": "1"})
    # the query string is not part of the sentence
    assert str(caught.value) == (
        f"The source has no dataset at {source.url}/resource/abcd-1234.json (HTTP 404): check "
        "CRIME_DATASET_ID and CRIME_SOURCE_URL."
    )
    assert source.request_count == 1
    assert client.requests_made == 1


def test_400_raises_at_once_with_the_servers_message(source):
    client = client_for(source.url)
    with pytest.raises(SourceError) as caught:
        client.get_json(JSON_PATH, {"$select": "no_such_column", "$limit": "1"})
    message = str(caught.value)
    assert message.startswith(
        f"The source rejected the query to {source.url}{JSON_PATH} (HTTP 400: "
    )
    assert "no_such_column" in message
    assert message.endswith("the dataset's columns may have changed; check the dataset spec.")
    assert "\n" not in message
    assert source.request_count == 1
    assert client.requests_made == 1


@pytest.mark.parametrize("status", [401, 403])
def test_refused_access_raises_at_once_naming_the_token(status):
    refused = Reply(
        status, json.dumps({"code": "forbidden", "message": "Invalid app_token"}).encode()
    )
    with ScriptedServer([refused, Reply(200, b"[]")]) as stub:
        url = stub.url
        client = client_for(url)
        with pytest.raises(SourceError) as caught:
            client.get_json("/resource/x.json", {"$limit": "1"})
        assert len(stub.seen) == 1
    assert str(caught.value) == (
        f"The source refused access to {url}/resource/x.json (HTTP {status}: Invalid "
        "app_token): check SOCRATA_APP_TOKEN."
    )
    assert client.requests_made == 1


def test_another_status_is_one_sentence_with_a_plain_text_message():
    with ScriptedServer([Reply(418, b"short and stout\n", "text/plain")]) as stub:
        url = stub.url
        client = client_for(url)
        with pytest.raises(SourceError) as caught:
            client.get("/teapot", expect="json")
        assert len(stub.seen) == 1
    assert str(caught.value) == f"The source answered HTTP 418 for {url}/teapot: short and stout."


def test_requests_made_counts_every_answered_attempt(source):
    # requests 2-5 fail (429, 500, 429, html); 1 and 6-8 answer: 4 results from 8 requests
    source.faults.throttle_every = 2
    source.faults.error_every = 3
    source.faults.html_every = 5
    source.faults.max_faults = 4
    source.faults.retry_after = "0"
    client = client_for(source.url, attempts=6)
    for _ in range(4):
        assert len(client.get_json(JSON_PATH, PAGE)) == 5
    assert source.faults.kinds() == ["throttle", "error", "throttle", "html"]
    assert client.requests_made == source.request_count == 8


def test_requests_made_is_exact_under_concurrent_use(source):
    client = client_for(source.url, pool_size=8)
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            for _ in range(10):
                client.get_json(JSON_PATH, PAGE)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert client.requests_made == source.request_count == 80


def test_the_app_token_reaches_the_server_on_every_request_and_retry(source):
    source.faults.throttle_every = 2
    source.faults.error_every = 3
    source.faults.drop_every = 5
    source.faults.retry_after = "0"
    client = client_for(source.url, headers={"X-App-Token": "tok-http-7d1e"}, attempts=6)
    client.get_json(f"/api/views/{DATASET}.json")
    for _ in range(5):
        client.get(CSV_PATH, PAGE, expect="csv")
    log = source.requests_log
    assert len(log) > 6  # the retries are in it
    assert {request.app_token for request in log} == {"tok-http-7d1e"}


def test_every_header_passed_is_sent_with_every_attempt():
    script = [
        Reply(503, b"{}"),
        Reply(429, b"{}", headers=(("Retry-After", "0"),)),
        Reply(200, b"[]"),
    ]
    with ScriptedServer(script) as stub:
        client = client_for(stub.url, headers={"X-App-Token": "tok-a", "X-Extra": "yes"})
        assert client.get_json("/h.json") == []
        seen = stub.seen
    assert len(seen) == 3
    for request in seen:
        assert request.headers["X-App-Token"] == "tok-a"
        assert request.headers["X-Extra"] == "yes"
        assert request.headers["User-Agent"] == "seattle-crime-loader/0.1"
        assert "gzip" in request.headers["Accept-Encoding"]
