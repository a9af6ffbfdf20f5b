"""Access control of the feature server: key scopes, JWT bearer tokens, the audit log (in-process TestClient)."""

from __future__ import annotations

import datetime as dt
import hmac
import json
import logging.handlers

import jwt
import pytest
from fastapi.testclient import TestClient

from feature_platform.config import API_SCOPES, ConfigError, Settings, api_key_scopes
from feature_platform.serving import auth
from feature_platform.serving.api import create_app
from feature_platform.serving.auth import AuditLog, KeyTable, key_id, token_scopes

NOW = dt.datetime(2025, 3, 13, 9, 0)
SECRET = "s" * 40  # HS256 secret (>= 32 characters)
READER, EVENTS_KEY, ADMIN_KEY, OLD_KEY = "reader-key-1", "events-key-2", "admin-key-3", "old-key-4"
KEYS = (f"{READER}:features:read+predict", f"{EVENTS_KEY}:events:write", f"{ADMIN_KEY}:admin", OLD_KEY)
EVENT = {"event_id": "e-access-1", "user_id": "u000001", "event_type": "page_view", "timestamp": "2025-03-13T08:00:00"}


def _client(data, **changes) -> TestClient:
    return TestClient(create_app(Settings(data_dir=data, **changes), reload_seconds=0, clock=lambda: NOW))


def _token(secret: str = SECRET, expires_in: float = 3600, **claims) -> str:
    payload = {"sub": "alice", "exp": dt.datetime.now(dt.UTC) + dt.timedelta(seconds=expires_in), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def client(served_data):
    with _client(served_data, api_keys=KEYS, jwt_secret=SECRET) as c:
        yield c


# -- configuration --------------------------------------------------------------------------------
def test_key_entries_parse_to_scopes_and_the_old_form_means_every_scope():
    assert api_key_scopes(("a:features:read+predict", " b:events:write ", "c")) == {
        "a": frozenset({"features:read", "predict"}), "b": frozenset({"events:write"}), "c": frozenset(API_SCOPES)}
    env = Settings.from_env({"FP_API_KEYS": "k1,k2"})
    assert api_key_scopes(env.api_keys) == {"k1": frozenset(API_SCOPES), "k2": frozenset(API_SCOPES)}


@pytest.mark.parametrize(("value", "message"), [
    ("k1:features:write", "unknown scopes ['features:write']"),
    ("k1:", "unknown scopes ['']"),
    ("k1:predict+", "unknown scopes ['']"),
    (":predict", "the key is empty"),
    ("k1:predict,k1:admin", "listed twice"),
])
def test_malformed_api_keys_are_refused_at_start_without_echoing_the_key(value, message):
    with pytest.raises(ConfigError, match="FP_API_KEYS entry") as error:
        Settings.from_env({"FP_API_KEYS": value})
    assert message in str(error.value)
    assert "k1" not in str(error.value)


@pytest.mark.parametrize(("env", "message"), [
    ({"FP_JWT_SECRET": SECRET, "FP_JWT_PUBLIC_KEY": "-----BEGIN PUBLIC KEY-----\nx\n-----END PUBLIC KEY-----"}, "not both"),
    ({"FP_JWT_SECRET": "short"}, "at least 32"),
    ({"FP_JWT_PUBLIC_KEY": "/no/such/key.pem"}, "neither PEM text nor a readable file"),
    ({"FP_AUDIT_LOG": "-", "FP_AUDIT_LOG_BACKUPS": "0"}, "FP_AUDIT_LOG_BACKUPS"),
])
def test_unusable_jwt_and_audit_settings_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_secrets_stay_out_of_the_settings_repr():
    text = repr(Settings(api_keys=(READER,), jwt_secret=SECRET))
    assert READER not in text and SECRET not in text


def test_keys_are_compared_in_constant_time_against_every_key(monkeypatch):
    calls, original = [], hmac.compare_digest

    def compare(a, b):
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", compare)
    table = KeyTable(api_key_scopes(("first", "second:admin", "third")))
    found = table.lookup("second")
    assert found is not None and found.name == f"key:{key_id('second')}" and found.scopes == {"admin"}
    assert len(calls) == 3  # no early exit on the match
    assert table.lookup("nope") is None


def test_a_key_is_named_by_the_first_8_hex_of_its_sha256():
    assert key_id("abc") == "ba7816bf"


def test_token_scopes_from_oauth_scope_or_a_scopes_list():
    assert token_scopes({"scope": "predict features:read other:thing"}) == {"predict", "features:read"}
    assert token_scopes({"scopes": ["admin", "nope"]}) == {"admin"}
    assert token_scopes({}) == frozenset()


# -- scopes per route -----------------------------------------------------------------------------
READS = [("get", "/features/u000001", None), ("post", "/features/batch", {"user_ids": ["u000001"]}),
         ("get", "/context/u000001", None), ("get", "/registry/features", None),
         ("get", "/registry/features/total_events", None)]
ROUTES = [*[(*r, "features:read") for r in READS],
          ("post", "/predict/churn", {"user_id": "u000001"}, "predict"),
          ("post", "/events", {"events": []}, "events:write"),
          ("get", "/metrics", None, "admin")]


@pytest.mark.parametrize(("method", "path", "body", "scope"), ROUTES)
def test_each_route_needs_its_scope(client, method, path, body, scope):
    holders = {READER: {"features:read", "predict"}, EVENTS_KEY: {"events:write"}, ADMIN_KEY: {"admin"},
               OLD_KEY: set(API_SCOPES)}
    for key, scopes in holders.items():
        response = client.request(method, path, json=body, headers={"X-API-Key": key})
        if scope in scopes:
            assert response.status_code not in (401, 403), (key, response.text)
        else:
            assert response.status_code == 403, (key, response.text)
            assert f"lacks the scope '{scope}'" in response.json()["detail"]
            assert key not in response.text and f"key:{key_id(key)}" in response.json()["detail"]


def test_a_read_key_cannot_write_events_and_an_events_key_cannot_read(client):
    assert client.post("/events", json={"events": [EVENT]}, headers={"X-API-Key": READER}).status_code == 403
    assert client.get("/features/u000001", headers={"X-API-Key": EVENTS_KEY}).status_code == 403
    assert client.get("/features/u000001", headers={"X-API-Key": READER}).status_code == 200


def test_missing_and_unknown_credentials_keep_401_and_403(client):
    missing = client.get("/features/u000001")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "APIKey, Bearer"
    assert client.get("/features/u000001", headers={"X-API-Key": "nope"}).status_code == 403
    assert client.get("/health").status_code == 200


# -- JWT ------------------------------------------------------------------------------------------
def test_a_valid_hs256_token_with_the_scope_is_served(client):
    assert client.get("/features/u000001", headers=_bearer(_token(scope="features:read"))).status_code == 200
    assert client.get("/metrics", headers=_bearer(_token(scopes=["admin"]))).status_code == 200


@pytest.mark.parametrize("token", [
    pytest.param(_token(expires_in=-60, scope="features:read"), id="expired"),
    pytest.param(_token(secret="w" * 40, scope="features:read"), id="wrong-signature"),
    pytest.param(jwt.encode({"sub": "alice", "scope": "features:read"}, SECRET, algorithm="HS256"), id="no-exp"),
    pytest.param("not.a.token", id="garbage"),
])
def test_a_bad_token_is_401_with_a_bearer_challenge(client, token):
    response = client.get("/features/u000001", headers=_bearer(token))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_bearer_token_sent_with_a_key_is_the_credential_checked(client):
    expired = _token(expires_in=-60, scope="features:read")  # a valid key beside it does not rescue it
    response = client.get("/features/u000001", headers={**_bearer(expired), "X-API-Key": READER})
    assert response.status_code == 401 and "invalid bearer token" in response.json()["detail"]
    narrow = client.get("/features/u000001", headers={**_bearer(_token(scope="predict")), "X-API-Key": READER})
    assert narrow.status_code == 403 and "jwt:" in narrow.json()["detail"]


def test_a_token_without_the_scope_is_403_naming_it(client):
    response = client.post("/events", json={"events": []}, headers=_bearer(_token(scope="features:read")))
    assert response.status_code == 403 and "'events:write'" in response.json()["detail"]
    assert 'insufficient_scope' in response.headers["WWW-Authenticate"]


def test_audience_and_issuer_are_required_when_configured(served_data):
    with _client(served_data, jwt_secret=SECRET, jwt_audience="fp", jwt_issuer="idp") as c:
        good = _token(scope="features:read", aud="fp", iss="idp")
        assert c.get("/registry/features", headers=_bearer(good)).status_code == 200
        for bad in (_token(scope="features:read", aud="other", iss="idp"), _token(scope="features:read", iss="idp"),
                    _token(scope="features:read", aud="fp"), _token(scope="features:read", aud="fp", iss="evil")):
            assert c.get("/registry/features", headers=_bearer(bad)).status_code == 401


def test_rs256_tokens_verify_with_the_public_key(served_data, tmp_path):
    pytest.importorskip("cryptography")
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    (tmp_path / "key.pem").write_text(pem)
    settings = Settings.from_env({"FP_DATA_DIR": str(served_data), "FP_JWT_PUBLIC_KEY": str(tmp_path / "key.pem")})
    exp = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    with TestClient(create_app(settings, reload_seconds=0, clock=lambda: NOW)) as c:
        token = jwt.encode({"sub": "svc", "exp": exp, "scope": "features:read"}, private, algorithm="RS256")
        assert c.get("/registry/features", headers=_bearer(token)).status_code == 200
        forged = jwt.encode({"sub": "svc", "exp": exp, "scope": "features:read"}, SECRET, algorithm="HS256")
        assert c.get("/registry/features", headers=_bearer(forged)).status_code == 401


def test_rs256_without_cryptography_is_a_clear_config_error(served_data, monkeypatch):
    monkeypatch.setattr(jwt.algorithms, "has_crypto", False)
    pem = "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"
    with pytest.raises(ConfigError, match="cryptography"):
        create_app(Settings(data_dir=served_data, jwt_public_key=pem), reload_seconds=0)


# -- audit ----------------------------------------------------------------------------------------
def test_the_audit_log_has_one_line_per_protected_request_and_no_secret(served_data, tmp_path):
    path = tmp_path / "audit.log"
    token = _token(scope="features:read")
    with _client(served_data, api_keys=KEYS, jwt_secret=SECRET, audit_log=str(path)) as c:
        c.post("/features/batch", json={"user_ids": ["u000001", "u000002", "u000003"]},
               headers={"X-API-Key": READER})
        c.get("/features/u000001", headers=_bearer(token))
        c.get("/metrics", headers={"X-API-Key": READER})
        c.get("/features/u000001")
        c.get("/health")  # not protected: not audited
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert [(r["principal"], r["method"], r["route"], r["status"], r["users"]) for r in lines] == [
        (f"key:{key_id(READER)}", "POST", "/features/batch", 200, 3),
        ("jwt:alice", "GET", "/features/{user_id}", 200, 1),
        (f"key:{key_id(READER)}", "GET", "/metrics", 403, 0),
        ("-", "GET", "/features/{user_id}", 401, 1),
    ]
    for record in lines:
        assert dt.datetime.fromisoformat(record["time"]).utcoffset() == dt.timedelta(0)
    for secret in (READER, SECRET, token):
        assert secret not in text


def test_the_audit_file_rotates_with_the_configured_size_and_backups(tmp_path):
    log = AuditLog.from_settings(Settings(audit_log=str(tmp_path / "audit.log"), audit_log_max_bytes=2048,
                                          audit_log_backups=2))
    assert log is not None
    handler = log.handler
    assert isinstance(handler, logging.handlers.RotatingFileHandler)
    assert (handler.maxBytes, handler.backupCount) == (2048, 2)
    for _ in range(100):
        log.write("key:00000000", "/features/{user_id}", "GET", 200, 1)
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit.log", "audit.log.1", "audit.log.2"]
    assert all(p.stat().st_size <= 2048 for p in tmp_path.iterdir())


def test_without_fp_audit_log_nothing_is_audited(served_data):
    assert AuditLog.from_settings(Settings(data_dir=served_data)) is None
    app = create_app(Settings(data_dir=served_data), reload_seconds=0, clock=lambda: NOW)
    assert not any(m.cls is auth.AuditMiddleware for m in app.user_middleware)


def test_audit_to_stdout(served_data, capsys):
    with _client(served_data, audit_log="-") as c:
        c.get("/registry/features")
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["principal"] == "anonymous" and line["route"] == "/registry/features" and line["status"] == 200
