"""Who may call the service: API keys (SCGAN_API_KEYS_FILE), CORS (SCGAN_CORS_ORIGINS), and the offline docs."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

import pytest
from service_test_helpers import gray_image, image_bytes, run_app, run_main

from service import Settings
from service.app import CORS_EXPOSED_HEADERS, DOCS_ASSETS_URL
from service.auth import ApiKeys, ApiKeysError
from service.redoc_bundle import EMPTY_LOGO_URL, REDOC_LOGO_URL

pytestmark = pytest.mark.anyio

#: Plain key in the file, and a key the file holds only as its SHA-256.
PLAIN_KEY = "k3y-plain-7d1e0c9b2a"
HASHED_KEY = "k3y-hashed-55aa0f3c91"
WRONG_KEY = "k3y-wrong-0000000000"
ORIGIN = "https://app.example.org"


@pytest.fixture()
def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "api-keys"
    digest = hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    path.write_text(f"# team A\n{PLAIN_KEY}\n\n  sha256:{digest}  \n")
    return path


def _files() -> dict[str, tuple[str, bytes, str]]:
    return {"file": ("in.png", image_bytes(gray_image(64, 48), "PNG"), "image/png")}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# -- API keys over HTTP --------------------------------------------------------------------------------------------
async def test_right_key_passes_wrong_or_missing_key_is_401_and_probes_stay_open(
    make_settings: Callable[..., Settings], keys_file: Path
) -> None:
    async with run_app(make_settings(api_keys_file=keys_file)) as svc:
        client = svc.client
        for key in (PLAIN_KEY, HASHED_KEY):
            assert (await client.post("/colorize", files=_files(), headers=_bearer(key))).status_code == 200
            assert (await client.post("/saliency", files=_files(), headers=_bearer(key))).status_code == 200
            assert (await client.get("/v1/model", headers=_bearer(key))).status_code == 200

        refused = [
            await client.post("/colorize", files=_files()),
            await client.post("/colorize", files=_files(), headers=_bearer(WRONG_KEY)),
            await client.post("/colorize", files=_files(), headers=_bearer(PLAIN_KEY[:-1])),  # a prefix
            await client.post("/colorize", files=_files(), headers={"Authorization": f"Basic {PLAIN_KEY}"}),
            await client.post("/saliency", files=_files(), headers=_bearer(WRONG_KEY)),
            await client.get("/v1/model"),
        ]
        for response in refused:
            assert response.status_code == 401, response.text
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            error = response.json()["error"]
            assert error["code"] == "unauthorized"
            assert error["request_id"] == response.headers["X-Request-ID"]
        # An unauthenticated request is refused before its options are even looked at.
        bad_options = await client.post("/colorize?quality=1000", files=_files())
        assert bad_options.status_code == 401

        for path in ("/healthz", "/readyz", "/metrics", "/", "/docs", "/redoc", "/openapi.json"):
            assert (await client.get(path)).status_code == 200, path

        assert svc.metric("scgan_auth_rejected_total", {"route": "/colorize", "reason": "missing"}) == 3
        assert svc.metric("scgan_auth_rejected_total", {"route": "/colorize", "reason": "invalid"}) == 2
        assert svc.metric("scgan_auth_rejected_total", {"route": "/saliency", "reason": "invalid"}) == 1
        assert svc.metric("scgan_auth_rejected_total", {"route": "/v1/model", "reason": "missing"}) == 1
        labels = {"route": "/colorize", "method": "POST", "status": "401"}
        assert svc.metric("scgan_http_requests_total", labels) == 5
        assert svc.metric("scgan_errors_total", {"kind": "unauthorized"}) == 7


async def test_metrics_need_a_key_only_when_asked(make_settings: Callable[..., Settings], keys_file: Path) -> None:
    async with run_app(make_settings(api_keys_file=keys_file, metrics_auth=True)) as svc:
        assert (await svc.client.get("/metrics")).status_code == 401
        assert (await svc.client.get("/metrics", headers=_bearer(WRONG_KEY))).status_code == 401
        assert (await svc.client.get("/metrics", headers=_bearer(PLAIN_KEY))).status_code == 200
        assert (await svc.client.get("/readyz")).status_code == 200
        assert svc.metric("scgan_auth_rejected_total", {"route": "/metrics", "reason": "invalid"}) == 1


async def test_without_a_keys_file_the_service_is_open_and_says_so(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        async with run_app(make_settings()) as svc:
            assert (await svc.client.post("/colorize", files=_files())).status_code == 200
            assert (await svc.client.get("/v1/model")).status_code == 200
            assert (await svc.client.get("/metrics")).status_code == 200
            schema = (await svc.client.get("/openapi.json")).json()
    assert "securitySchemes" not in schema.get("components", {})
    assert all("security" not in op for ops in schema["paths"].values() for op in ops.values())
    open_lines = [r for r in caplog.records if "open to anyone" in r.getMessage()]
    assert len(open_lines) == 1


async def test_with_keys_the_schema_declares_the_bearer_scheme(
    make_settings: Callable[..., Settings], keys_file: Path
) -> None:
    async with run_app(make_settings(api_keys_file=keys_file)) as svc:
        schema = (await svc.client.get("/openapi.json")).json()
    [(name, scheme)] = schema["components"]["securitySchemes"].items()
    assert scheme == {"type": "http", "scheme": "bearer", "description": scheme["description"]}
    paths = schema["paths"]
    for path, method in (("/colorize", "post"), ("/saliency", "post"), ("/v1/model", "get")):
        assert paths[path][method]["security"] == [{name: []}], path
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in paths[path]["get"], path


async def test_a_key_never_appears_in_logs_metrics_or_error_bodies(
    make_settings: Callable[..., Settings], keys_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with run_app(make_settings(api_keys_file=keys_file)) as svc:
            for key in (PLAIN_KEY, HASHED_KEY, WRONG_KEY):
                for path in ("/colorize", "/saliency"):
                    response = await svc.client.post(path, files=_files(), headers=_bearer(key))
                    seen.append(response.text if response.status_code != 200 else "")
                    seen.append(str(response.headers))
                response = await svc.client.get("/v1/model", headers=_bearer(key))
                seen.extend((response.text, str(response.headers)))
            broken = await svc.client.post("/colorize", content=b"not an image", headers=_bearer(PLAIN_KEY))
            assert broken.status_code == 415
            seen.append(broken.text)
            seen.append((await svc.client.get("/metrics")).text)
    seen.extend(caplog.text.splitlines())
    seen.extend(str(record.__dict__) for record in caplog.records)
    assert any("API keys required" in line for line in seen)  # the start-up line is in what we searched
    digest = hashlib.sha256(HASHED_KEY.encode()).hexdigest()
    for secret in (PLAIN_KEY, HASHED_KEY, WRONG_KEY, digest):
        leaks = [text for text in seen if secret in text]
        assert not leaks, (secret, leaks[:3])


# -- the comparison -------------------------------------------------------------------------------------------------
def test_verify_compares_every_stored_key_whatever_the_input(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = ApiKeys([hashlib.sha256(k.encode()).digest() for k in ("alpha-key", "beta-key", "gamma-key")])
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    for presented, expected in (
        ("alpha-key", True),
        ("gamma-key", True),
        ("alpha-ke", False),
        ("", False),
        ("x" * 10_000, False),
    ):
        calls.clear()
        assert keys.verify(presented) is expected
        # Always all three, always on fixed-length digests: the first match does not end the loop, and the
        # presented key's length or shared prefix never reaches the comparison.
        assert calls == [(32, 32)] * 3, presented


def _prefix_timings(check: Callable[[str], object], key: str, samples: int = 300) -> tuple[float, float]:
    """Fastest times of ``check`` on a wrong key sharing all but the last character with ``key`` and on one sharing
    nothing. One call per sample, the two interleaved: on a shared CPU most samples are stretched by other work,
    and the minimum of many short ones is the undisturbed time."""
    near = key[:-1] + ("A" if key[-1] != "A" else "B")
    far = ("B" if key[0] != "B" else "C") + key[1:]
    best = {near: float("inf"), far: float("inf")}
    for _ in range(samples):
        for presented in (near, far):
            started = time.perf_counter_ns()
            check(presented)
            best[presented] = min(best[presented], time.perf_counter_ns() - started)
    return best[near], best[far]


def test_no_early_exit_on_a_prefix_match() -> None:
    """Timing: a wrong key that shares a long prefix with a real one takes as long to refuse as one sharing nothing.

    The harness is shown to catch an early exit: the same measurement of a plain ``==`` on the keys (which stops at
    the first differing byte) finds the near-miss far slower.
    """
    key = "k" * 1_000_000  # long, so that an early exit would be measurable
    keys = ApiKeys([hashlib.sha256(key.encode()).digest()])
    near, far = _prefix_timings(keys.verify, key)
    assert 0.8 < near / far < 1.25, (near, far)

    def naive(presented: str) -> bool:
        return presented == key

    naive_near, naive_far = _prefix_timings(naive, key)
    assert naive_near / naive_far > 3, (naive_near, naive_far)


# -- the keys file --------------------------------------------------------------------------------------------------
def test_keys_file_formats(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    digest = hashlib.sha256(b"two").hexdigest()
    path.write_text(f"one\n# a comment\n\nSHA256:{digest.upper()}\n")
    keys = ApiKeys.from_file(path)
    assert len(keys) == 2 and keys.verify("one") and keys.verify("two") and not keys.verify("three")
    assert "one" not in repr(keys) and digest not in repr(keys)
    assert repr(keys) == "ApiKeys(2 keys)"
    path.write_text("one\n")
    assert repr(ApiKeys.from_file(path)) == "ApiKeys(1 key)"


def _file_with(content: bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / "keys"
        path.write_bytes(content)
        return path

    return make


def _unreadable(tmp_path: Path) -> Path:
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    path = tmp_path / "keys"
    path.write_text("secret-key\n")
    path.chmod(0)
    return path


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda tmp: tmp / "absent", "does not exist"),
        (_file_with(b""), "holds no keys"),
        (_file_with(b"# only a comment\n\n"), "holds no keys"),
        (lambda tmp: tmp, "is a directory"),
        (_file_with(b"\xff\xfe\x00secret"), "not UTF-8"),
        (_file_with(b"sha256:secret-not-hex\n"), "line 1"),
        (_file_with(b"ok-key\nsecret key\n"), "line 2"),
        (_unreadable, "not readable"),
    ],
    ids=["missing", "empty", "comments-only", "directory", "not-utf8", "bad-digest", "whitespace", "unreadable"],
)
def test_an_unusable_keys_file_stops_start_up_with_one_line(
    make: Callable[[Path], Path],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path = make(tmp_path)
    with pytest.raises(ApiKeysError, match=expected):
        ApiKeys.from_file(path)
    monkeypatch.setenv("SCGAN_API_KEYS_FILE", str(path))
    assert run_main([]) == 2
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "SCGAN_API_KEYS_FILE" in lines[0] and expected in lines[0]
    assert "secret" not in lines[0].replace(str(tmp_path), "")  # the file's content is never echoed


def test_access_settings_are_validated(keys_file: Path) -> None:
    with pytest.raises(ValueError, match="SCGAN_METRICS_AUTH=true needs SCGAN_API_KEYS_FILE"):
        Settings(metrics_auth=True)
    for bad in ("app.example.org", "ftp://app.example.org", "https://app.example.org/path", "https://"):
        with pytest.raises(ValueError, match="not an origin"):
            Settings(cors_origins=bad)
    assert Settings(cors_origins=" https://a.example , http://b.example:8080/ ").cors_origins == (
        "https://a.example",
        "http://b.example:8080",
    )


def test_cors_origins_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCGAN_CORS_ORIGINS", "https://a.example,https://b.example")
    assert Settings().cors_origins == ("https://a.example", "https://b.example")
    monkeypatch.setenv("SCGAN_CORS_ORIGINS", "")
    assert Settings().cors_origins == ()


# -- CORS -----------------------------------------------------------------------------------------------------------
async def test_cors_preflight_and_exposed_headers_with_api_keys(
    make_settings: Callable[..., Settings], keys_file: Path
) -> None:
    async with run_app(make_settings(api_keys_file=keys_file, cors_origins=ORIGIN)) as svc:
        preflight = await svc.client.options(
            "/colorize",
            headers={
                "Origin": ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert preflight.status_code == 200, preflight.text  # no key: browsers never send one with a preflight
        assert preflight.headers["Access-Control-Allow-Origin"] == ORIGIN
        allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
        assert {"authorization", "content-type"} <= allowed
        assert "POST" in preflight.headers["Access-Control-Allow-Methods"]

        response = await svc.client.post("/colorize", files=_files(), headers={"Origin": ORIGIN, **_bearer(PLAIN_KEY)})
        assert response.status_code == 200
        assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
        exposed = {h.strip().lower() for h in response.headers["Access-Control-Expose-Headers"].split(",")}
        ours = {name.lower() for name in response.headers if name.lower().startswith("x-")} | {"server-timing"}
        assert ours <= exposed, ours - exposed
        assert {"x-request-id", "x-total-ms", "x-inference-ms", "retry-after"} <= exposed

        # A refused key is still readable by the calling app (CORS headers on the 401).
        refused = await svc.client.post("/colorize", files=_files(), headers={"Origin": ORIGIN})
        assert refused.status_code == 401 and refused.headers["Access-Control-Allow-Origin"] == ORIGIN

        stranger = await svc.client.options(
            "/colorize", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert stranger.status_code == 400 and "Access-Control-Allow-Origin" not in stranger.headers


async def test_cors_is_off_by_default(make_settings: Callable[..., Settings]) -> None:
    async with run_app(make_settings()) as svc:
        response = await svc.client.post("/colorize", files=_files(), headers={"Origin": ORIGIN})
        assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
        preflight = await svc.client.options(
            "/colorize", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        )
        assert preflight.status_code == 405 and "Access-Control-Allow-Origin" not in preflight.headers
    assert len(set(CORS_EXPOSED_HEADERS)) == len(CORS_EXPOSED_HEADERS)


# -- documentation without a CDN --------------------------------------------------------------------------------------
_URL_ATTRIBUTE = re.compile(r"""(?:src|href|url|spec-url)\s*[=:]\s*['"]([^'"]+)['"]""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_pages_load_only_same_origin_assets(make_settings: Callable[..., Settings], page: str) -> None:
    async with run_app(make_settings(), ready=False) as svc:
        response = await svc.client.get(page)
        assert response.status_code == 200
        html = response.text
        urls = _URL_ATTRIBUTE.findall(html)
        assert any(url.startswith(DOCS_ASSETS_URL) and url.endswith(".js") for url in urls), urls
        for url in urls:
            assert url.startswith("/"), f"{page} loads {url}"
            assert (await svc.client.get(url)).status_code == 200, url
        assert "cdn.jsdelivr" not in html and "fonts.googleapis" not in html and "tiangolo" not in html
        # The browser is told so too: whatever the bundles' code asks for, nothing but this origin (and the
        # page's own blob:/data: URLs) is fetched.
        policy = response.headers["Content-Security-Policy"]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["default-src"] == "'self'"
        for name in ("script-src", "style-src", "img-src", "font-src", "worker-src", "connect-src"):
            sources = set(directives[name].split())
            assert sources <= {"'self'", "'unsafe-inline'", "data:", "blob:"}, (name, sources)


async def test_the_redoc_bundle_served_has_no_third_party_logo(make_settings: Callable[..., Settings]) -> None:
    """The package's bundle draws its footer logo from cdn.redoc.ly; the one /redoc loads does not."""
    package_bundle = files("fastapi_offline").joinpath("static", "redoc.standalone.js").read_text(encoding="utf-8")
    assert REDOC_LOGO_URL in package_bundle  # what there is to replace
    async with run_app(make_settings(), ready=False) as svc:
        html = (await svc.client.get("/redoc")).text
        bundle_url = f"{DOCS_ASSETS_URL}/redoc.standalone.js"
        assert f'src="{bundle_url}"' in html
        response = await svc.client.get(bundle_url)
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/javascript")
        assert "cdn.redoc.ly" not in response.text and EMPTY_LOGO_URL in response.text
        assert len(response.content) > 1_000_000  # the whole bundle, not a stub
        assert (await svc.client.get(f"{DOCS_ASSETS_URL}/swagger-ui.css")).status_code == 200  # the mount still serves
