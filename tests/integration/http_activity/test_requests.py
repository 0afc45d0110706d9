"""Methods, bodies, query, headers, response capture, size limit, redirects, expected status."""

from __future__ import annotations

import base64
import gzip
import json

import pytest
from aiohttp import web

from cadenza.activities._context import ActivityDefinition
from cadenza.activities._http import http_request
from cadenza.activities._http_config import HttpRequestConfig
from cadenza.history import ApplicationError


async def echo(request: web.Request, server) -> web.Response:
    raw = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.path,
            "query": [[k, v] for k, v in request.query.items()],
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "content_type": request.headers.get("Content-Type"),
            "body_b64": base64.b64encode(raw).decode(),
        }
    )


@pytest.fixture
async def echo_server(serve):
    return await serve([("*", "/echo", echo), ("*", "/echo/{tail:.*}", echo)])


def test_registered_as_http_activity() -> None:
    assert ActivityDefinition.of(http_request).name == "http"
    assert ActivityDefinition.of(http_request).is_async


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
async def test_each_method_reaches_the_server(echo_server, method: str) -> None:
    result = await http_request({"url": echo_server.url("/echo"), "method": method.lower()})
    assert result["status"] == 200
    assert result["body_type"] == "json"
    assert result["body"]["method"] == method


async def test_head_returns_headers_without_body(echo_server) -> None:
    result = await http_request({"url": echo_server.url("/echo"), "method": "HEAD"})
    assert result["status"] == 200
    assert result["body"] is None
    assert result["body_type"] == "empty"
    assert result["headers"]["content-type"].startswith("application/json")
    assert echo_server.requests[-1].method == "HEAD"


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    ("body", "content_type", "raw"),
    [
        ({"json": {"a": [1, 2], "b": None}}, "application/json", b'{"a":[1,2],"b":null}'),
        ({"json": None}, "application/json", b"null"),
        (
            {"form": {"name": "Nguyễn Văn A", "tag": ["x", "y"], "n": 3, "ok": True}},
            "application/x-www-form-urlencoded",
            b"name=Nguy%E1%BB%85n+V%C4%83n+A&tag=x&tag=y&n=3&ok=true",
        ),
        ({"text": "xin chào\n"}, "text/plain; charset=utf-8", "xin chào\n".encode()),
        (
            {"body_base64": base64.b64encode(b"\x00\xffbinary").decode()},
            "application/octet-stream",
            b"\x00\xffbinary",
        ),
    ],
    ids=["json", "json-null", "form", "text", "base64"],
)
async def test_body_kinds(echo_server, method, body, content_type, raw) -> None:
    result = await http_request({"url": echo_server.url("/echo"), "method": method, **body})
    seen = result["body"]
    assert seen["method"] == method
    assert seen["content_type"] == content_type
    assert base64.b64decode(seen["body_b64"]) == raw


async def test_form_body_decodes_as_form_on_the_server(serve) -> None:
    async def form(request: web.Request, server) -> web.Response:
        data = await request.post()
        return web.json_response({k: data.getall(k) for k in data})

    server = await serve([("POST", "/form", form)])
    result = await http_request(
        {"url": server.url("/form"), "method": "POST", "form": {"a": "1 & 2", "b": ["x", "y"]}}
    )
    assert result["body"] == {"a": ["1 & 2"], "b": ["x", "y"]}


async def test_content_type_header_overrides_body_default(echo_server) -> None:
    result = await http_request(
        {
            "url": echo_server.url("/echo"),
            "method": "POST",
            "text": "<a/>",
            "headers": {"Content-Type": "application/xml"},
        }
    )
    assert result["body"]["content_type"] == "application/xml"


async def test_query_merges_with_url_query_and_headers_are_sent(echo_server) -> None:
    result = await http_request(
        HttpRequestConfig(
            url=echo_server.url("/echo?fixed=1"),
            query={"q": "cà phê", "page": 2, "flag": False, "id": [7, 8]},
            headers={"X-Trace": "abc", "Accept": "application/json", "X-Version": 2},
        )
    )
    seen = result["body"]
    assert seen["query"] == [
        ["fixed", "1"],
        ["q", "cà phê"],
        ["page", "2"],
        ["flag", "false"],
        ["id", "7"],
        ["id", "8"],
    ]
    assert seen["headers"]["x-trace"] == "abc"
    assert seen["headers"]["x-version"] == "2"
    assert seen["headers"]["accept"] == "application/json"
    assert seen["headers"]["user-agent"].startswith("cadenza-http/")
    assert result["url"].startswith(echo_server.url("/echo?fixed=1&q="))


async def test_struct_and_dict_configs_behave_the_same(echo_server) -> None:
    as_dict = await http_request({"url": echo_server.url("/echo"), "query": {"a": "1"}})
    as_struct = await http_request(
        HttpRequestConfig(url=echo_server.url("/echo"), query={"a": "1"})
    )
    assert as_dict["body"] == as_struct["body"]


async def test_response_body_capture_kinds(serve) -> None:
    async def text(request, server):
        return web.Response(text="chào", content_type="text/plain", charset="utf-8")

    async def latin(request, server):
        return web.Response(
            body="café".encode("latin-1"), content_type="text/plain", charset="iso-8859-1"
        )

    async def binary(request, server):
        return web.Response(body=b"\x89PNG\x00\x01", content_type="image/png")

    async def problem(request, server):
        return web.Response(text='{"title":"x"}', content_type="application/problem+json")

    async def bad_json(request, server):
        return web.Response(text="{not json", content_type="application/json")

    async def gzipped(request, server):
        return web.Response(
            body=gzip.compress(json.dumps({"z": 1}).encode()),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        )

    async def odd_charset(request, server):
        return web.Response(body=b"plain", headers={"Content-Type": "text/plain; charset=klingon"})

    async def cookie(request, server):
        resp = web.json_response({})
        resp.set_cookie("session", "very-secret")
        resp.headers.add("X-Multi", "a")
        resp.headers.add("X-Multi", "b")
        return resp

    server = await serve(
        [
            ("GET", "/text", text),
            ("GET", "/latin", latin),
            ("GET", "/bin", binary),
            ("GET", "/problem", problem),
            ("GET", "/bad", bad_json),
            ("GET", "/gz", gzipped),
            ("GET", "/cookie", cookie),
            ("GET", "/odd", odd_charset),
        ]
    )

    async def get(path: str):
        result = await http_request({"url": server.url(path)})
        json.dumps(result)  # JSON-safe
        return result

    assert (await get("/text"))["body"] == "chào"
    assert (await get("/latin"))["body"] == "café"
    result = await get("/bin")
    assert (result["body_type"], base64.b64decode(result["body"])) == ("base64", b"\x89PNG\x00\x01")
    assert (await get("/problem"))["body"] == {"title": "x"}
    result = await get("/bad")
    assert (result["body_type"], result["body"]) == ("text", "{not json")
    assert (await get("/gz"))["body"] == {"z": 1}
    result = await get("/odd")  # unknown charset: kept as base64 rather than guessed
    assert (result["body_type"], base64.b64decode(result["body"])) == ("base64", b"plain")
    result = await get("/cookie")
    assert "very-secret" not in json.dumps(result)
    assert result["headers"]["x-multi"] == "a, b"


async def test_response_size_limit(serve) -> None:
    async def big(request, server):
        return web.Response(body=b"x" * 5000, content_type="text/plain")

    async def streamed(request, server):
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(10):
            await resp.write(b"y" * 1000)
        await resp.write_eof()
        return resp

    server = await serve([("*", "/big", big), ("GET", "/stream", streamed)])
    ok = await http_request({"url": server.url("/big"), "max_response_bytes": 5000})
    assert len(ok["body"]) == 5000
    head = await http_request(
        {"url": server.url("/big"), "method": "HEAD", "max_response_bytes": 10}
    )
    assert head["headers"]["content-length"] == "5000"  # announced, not sent: no limit applies
    for path in ("/big", "/stream"):
        with pytest.raises(ApplicationError) as caught:
            await http_request({"url": server.url(path), "max_response_bytes": 4096})
        assert caught.value.type == "HttpResponseTooLarge"
        assert caught.value.non_retryable
        assert caught.value.details[0]["max_response_bytes"] == 4096


async def _redirecting_server(serve):
    async def hop(request: web.Request, server):
        n = int(request.match_info["n"])
        code = int(request.query.get("code", "302"))
        if n == 0:
            return await echo(request, server)
        return _redirect(code, f"/hop/{n - 1}?code={code}")

    return await serve([("*", "/hop/{n}", hop)])


def _redirect(code: int, location: str) -> web.Response:
    return web.Response(status=code, headers={"Location": location})


async def test_redirects_followed_and_final_url_reported(serve) -> None:
    server = await _redirecting_server(serve)
    result = await http_request({"url": server.url("/hop/3")})
    assert result["status"] == 200
    assert result["url"] == server.url("/hop/0?code=302")
    assert server.hits("/hop/3") == server.hits("/hop/0") == 1


async def test_redirect_limit(serve) -> None:
    server = await _redirecting_server(serve)
    assert (await http_request({"url": server.url("/hop/2"), "max_redirects": 2}))["status"] == 200
    with pytest.raises(ApplicationError) as caught:
        await http_request({"url": server.url("/hop/3"), "max_redirects": 2})
    assert caught.value.type == "HttpTooManyRedirects"
    assert caught.value.non_retryable
    assert server.hits("/hop/0") == 1  # only the first, successful call got there


async def test_redirect_not_followed_when_disabled(serve) -> None:
    server = await _redirecting_server(serve)
    with pytest.raises(ApplicationError) as caught:
        await http_request({"url": server.url("/hop/1"), "follow_redirects": False})
    assert caught.value.type == "HttpUnexpectedStatus"
    assert caught.value.details[0]["status"] == 302
    result = await http_request(
        {"url": server.url("/hop/1"), "follow_redirects": False, "expected_status": ["3xx"]}
    )
    assert result["status"] == 302
    assert result["headers"]["location"] == "/hop/0?code=302"


@pytest.mark.parametrize(
    ("code", "method_after", "body_kept"),
    [
        (303, "GET", False),
        (302, "GET", False),
        (301, "GET", False),
        (307, "POST", True),
        (308, "POST", True),
    ],
)
async def test_redirect_method_rules(serve, code, method_after, body_kept) -> None:
    server = await _redirecting_server(serve)
    result = await http_request(
        {"url": server.url(f"/hop/1?code={code}"), "method": "POST", "json": {"x": 1}}
    )
    seen = result["body"]
    assert seen["method"] == method_after
    assert (base64.b64decode(seen["body_b64"]) == b'{"x":1}') is body_kept
    assert (seen["content_type"] == "application/json") is body_kept


async def test_credentials_not_forwarded_to_another_origin(serve) -> None:
    other = await serve([("GET", "/landing", echo)])

    async def away(request, server):
        return _redirect(302, other.url("/landing"))

    server = await serve([("GET", "/away", away)])
    result = await http_request(
        {
            "url": server.url("/away"),
            "auth": {"type": "bearer", "token": "tok-secret"},
            "headers": {"Cookie": "a=b", "X-Keep": "1"},
        }
    )
    seen = result["body"]["headers"]
    assert "authorization" not in seen
    assert "cookie" not in seen
    assert seen["x-keep"] == "1"
    assert server.requests[0].headers["Authorization"] == "Bearer tok-secret"


async def test_expected_status(serve) -> None:
    async def status(request, server):
        return web.Response(status=int(request.match_info["code"]), text="s")

    server = await serve([("GET", "/s/{code}", status)])
    result = await http_request({"url": server.url("/s/404"), "expected_status": [200, "404"]})
    assert result["status"] == 404
    result = await http_request({"url": server.url("/s/204"), "expected_status": ["200-204"]})
    assert result["status"] == 204
    with pytest.raises(ApplicationError) as caught:
        await http_request({"url": server.url("/s/200"), "expected_status": [201]})
    assert caught.value.type == "HttpUnexpectedStatus"
    assert caught.value.non_retryable
    with pytest.raises(ApplicationError) as caught:
        await http_request({"url": server.url("/s/503"), "expected_status": ["2xx"]})
    assert caught.value.type == "HttpServerError"
    assert not caught.value.non_retryable
