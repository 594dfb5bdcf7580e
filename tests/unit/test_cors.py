"""CORS policy: which pages may read answers, and the preflight, as pure header functions."""

from __future__ import annotations

import pytest

from gateway.http.cors import EXPOSED, CorsPolicy, is_preflight
from signer.format import METHODS

APP = "https://app.example.com"
LISTED = CorsPolicy((APP, "http://localhost:3000"), credentials=True, max_age=60)
ANYONE = CorsPolicy(("*",))


def preflight(origin: str = APP, method: str = "GET", headers: str = "") -> dict[str, str]:
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request["Access-Control-Request-Headers"] = headers
    return request


def test_an_allowed_origin_is_echoed_with_credentials_and_the_exposed_headers() -> None:
    assert LISTED.response_headers(APP) == {
        "Vary": "Origin",
        "Access-Control-Allow-Origin": APP,
        "Access-Control-Expose-Headers": EXPOSED,
        "Access-Control-Allow-Credentials": "true",
    }


@pytest.mark.parametrize("header", ["Content-Range", "Content-Length", "Accept-Ranges", "ETag"])
def test_the_headers_players_need_are_exposed(header: str) -> None:
    assert header in EXPOSED.split(", ")


@pytest.mark.parametrize("origin", [None, "https://evil.example", "https://app.example.com:8443"])
def test_other_origins_get_only_vary(origin: str | None) -> None:
    assert LISTED.response_headers(origin) == {"Vary": "Origin"}


def test_any_origin_is_a_star_without_credentials() -> None:
    headers = ANYONE.response_headers("https://whoever.example")
    assert headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in headers


def test_star_with_credentials_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="never"):
        CorsPolicy(("*",), credentials=True)


def test_cors_off_adds_nothing() -> None:
    assert CorsPolicy().response_headers(APP) == {}
    assert CorsPolicy().preflight(preflight()) is None


@pytest.mark.parametrize("headers", ["", "Range", "range, if-none-match", "If-Range"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_preflight_for_reading_with_range_is_allowed(method: str, headers: str) -> None:
    answer = LISTED.preflight(preflight(method=method, headers=headers))
    assert answer is not None
    assert answer["Access-Control-Allow-Origin"] == APP
    assert answer["Access-Control-Allow-Methods"] == "GET, HEAD, PUT"
    assert "range" in answer["Access-Control-Allow-Headers"].split(", ")
    assert answer["Access-Control-Max-Age"] == "60"
    assert answer["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize("headers", ["", "Content-Type", "content-type"])
def test_a_preflight_for_a_browser_upload_is_allowed(headers: str) -> None:
    answer = LISTED.preflight(preflight(method="PUT", headers=headers))
    assert answer is not None
    assert "PUT" in answer["Access-Control-Allow-Methods"].split(", ")
    assert "content-type" in answer["Access-Control-Allow-Headers"].split(", ")


@pytest.mark.parametrize(
    "request_headers",
    [
        preflight(origin="https://evil.example"),
        preflight(method="DELETE"),
        preflight(method="POST"),
        preflight(headers="Range, Authorization"),
        preflight(headers="X-Custom"),
    ],
)
def test_a_preflight_outside_the_policy_is_refused(request_headers: dict[str, str]) -> None:
    assert LISTED.preflight(request_headers) is None


AT_THE_BUCKET = (*METHODS, "POST")  # what the pipeline allows where a form upload goes


@pytest.mark.parametrize("headers", ["", "If-None-Match", "content-type, range"])
def test_a_preflight_for_a_form_post_is_allowed_where_posts_are(headers: str) -> None:
    answer = LISTED.preflight(preflight(method="POST", headers=headers), AT_THE_BUCKET)
    assert answer is not None
    assert answer["Access-Control-Allow-Origin"] == APP
    assert answer["Access-Control-Allow-Methods"] == "GET, HEAD, PUT, POST"
    assert answer["Access-Control-Allow-Credentials"] == "true"


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT"])
def test_where_posts_are_a_preflight_for_another_method_lists_post_too(method: str) -> None:
    answer = LISTED.preflight(preflight(method=method), AT_THE_BUCKET)
    assert answer is not None
    assert answer["Access-Control-Allow-Methods"] == "GET, HEAD, PUT, POST"


@pytest.mark.parametrize(
    "request_headers",
    [
        preflight(origin="https://evil.example", method="POST"),
        preflight(method="POST", headers="X-Custom"),
        preflight(method="POST", headers="Authorization"),
        preflight(method="DELETE"),
    ],
)
def test_where_posts_are_every_other_rule_still_holds(request_headers: dict[str, str]) -> None:
    assert LISTED.preflight(request_headers, AT_THE_BUCKET) is None


def test_where_posts_are_cors_off_still_adds_nothing() -> None:
    assert CorsPolicy().preflight(preflight(method="POST"), AT_THE_BUCKET) is None


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("OPTIONS", preflight(), True),
        ("OPTIONS", {"Origin": APP}, False),
        ("OPTIONS", {"Access-Control-Request-Method": "GET"}, False),
        ("GET", preflight(), False),
    ],
)
def test_only_options_with_origin_and_a_requested_method_is_a_preflight(
    method: str, headers: dict[str, str], expected: bool
) -> None:
    assert is_preflight(method, headers) is expected
