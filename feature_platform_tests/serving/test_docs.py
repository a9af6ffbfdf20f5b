"""/docs and /redoc work without internet: their JS/CSS come from the server itself, never from a CDN.

In-process: every script, style and icon the pages name is a path on this server that answers 200 with
that content, no URL points off-host, and with keys configured the docs still need none. In a browser:
the real server's Swagger UI renders every operation of the spec, and ReDoc renders, in a Chromium whose
only reachable host is the server (this machine has no internet, like the deployments this is for).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from feature_platform.config import Settings
from feature_platform.serving.api import create_app
from feature_platform_tests.serving.test_server import running_server

KEY = "docs-key"
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
URL_ATTRIBUTE = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
CONTENT = {"script": ("javascript", "SwaggerUIBundle"), "stylesheet": ("text/css", ".swagger-ui"),
           "redoc": ("javascript", "Redoc"), "icon": ("image/", "")}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    data = tmp_path_factory.mktemp("docs") / "data"
    data.mkdir()
    with TestClient(create_app(Settings(data_dir=data, api_keys=(KEY,)), reload_seconds=0)) as c:
        yield c


def _urls(html: str) -> list[str]:
    return URL_ATTRIBUTE.findall(html)


@pytest.mark.parametrize(("page", "expected"), [
    ("/docs", {"script", "stylesheet", "icon"}),
    ("/redoc", {"redoc", "icon"}),
])
def test_the_docs_pages_load_their_assets_from_this_server(client, page, expected):
    response = client.get(page)  # no key: the docs are open, as /openapi.json is
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    urls = _urls(html)
    assert "://" not in html and not any(u.startswith("//") for u in urls)  # nothing off-host, nor scheme-relative
    seen = set()
    for url in urls:
        assert url.startswith("/docs/static/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        kind = ("icon" if url.endswith(".png") else "stylesheet" if url.endswith(".css")
                else "redoc" if "redoc" in url else "script")
        content_type, marker = CONTENT[kind]
        assert content_type in asset.headers["content-type"], (url, asset.headers["content-type"])
        assert marker in asset.text if marker else len(asset.content) > 100
        seen.add(kind)
    assert seen == expected
    assert "'/openapi.json'" in html or '"/openapi.json"' in html  # the spec, from this server too


def test_the_docs_need_no_key_where_every_route_does(client):
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/docs/static/swagger-ui-bundle.js",
                 "/docs/static/swagger-ui.css", "/docs/static/redoc.standalone.js"):
        assert client.get(path).status_code == 200, path
    assert client.get("/features/u000001").status_code == 401
    assert client.get("/features/u000001", headers={"X-API-Key": KEY}).status_code == 404  # no data: unknown user
    paths = client.get("/openapi.json").json()["paths"]
    assert not any(p.startswith(("/docs", "/redoc")) for p in paths)  # the docs are no API operations


def test_the_assets_folder_serves_its_files_only(client):
    for path in ("/docs/static/", "/docs/static/../core.py", "/docs/static/%2e%2e/core.py", "/docs/static/nope.js"):
        assert client.get(path).status_code == 404, path


@pytest.mark.e2e
@pytest.mark.browser
def test_a_browser_renders_every_operation_without_internet(served_data, tmp_path, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    data = tmp_path / "data"
    shutil.copytree(served_data, data, ignore=shutil.ignore_patterns("*.sock", "*.settings"))
    with running_server(Path(data)) as base:
        spec = httpx.get(f"{base}/openapi.json").json()
        operations = sum(len(methods) for methods in spec["paths"].values())
        browser.get(f"{base}/docs")
        wait = WebDriverWait(browser, 90)
        wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".opblock")) >= operations)
        assert len(browser.find_elements(By.CSS_SELECTOR, ".opblock")) == operations
        text = browser.find_element(By.TAG_NAME, "body").text
        assert spec["info"]["title"] in text and "/predict/churn" in text
        assert "Failed to load" not in text and "Unable to render" not in text
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert loaded and all(url.startswith(base) for url in loaded), loaded

        browser.get(f"{base}/redoc")
        wait.until(lambda b: "Predict Churn" in b.find_element(By.TAG_NAME, "body").text)
        loaded = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        # ReDoc's script hard-codes one image, its vendor's logo under the side menu, which hides itself
        # when it cannot load: nothing the page needs.
        assert f"{base}/docs/static/redoc.standalone.js" in loaded
        assert all(url.startswith(base) or url == REDOC_LOGO for url in loaded), loaded
