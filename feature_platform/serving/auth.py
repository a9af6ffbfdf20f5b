"""Who may call the feature server, and the audit log of what they called.

Callers show an API key (``X-API-Key``, from FP_API_KEYS) or a JWT bearer token (``Authorization: Bearer``,
checked with FP_JWT_SECRET or FP_JWT_PUBLIC_KEY). Either carries scopes; each protected route needs one:

    features:read   GET /features*, POST /features/batch, GET /context/*, GET /registry/*
    predict         POST /predict/*
    events:write    POST /events
    admin           GET /metrics

Keys are compared in constant time and named anywhere (logs, audit, errors) only by ``key:<8 hex of sha256>``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from typing import Any

import jwt
from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Scope

from feature_platform.config import API_SCOPES, ConfigError, Settings, api_key_scopes
from feature_platform.serving.metrics import StatusObservingMiddleware

FEATURES_READ, PREDICT, EVENTS_WRITE, ADMIN = API_SCOPES
ANONYMOUS = "anonymous"  # the principal when no key or token is configured (loopback only)
UNAUTHENTICATED = "-"  # the principal of a request refused with 401/403 before one was known


@dataclass(frozen=True)
class Principal:
    name: str  # key:<id> or jwt:<sub>: what logs and the audit show, never a secret
    scopes: frozenset[str]


def key_id(secret: str) -> str:
    """A short, stable name for a key: the first 8 hex digits of its sha256."""
    return hashlib.sha256(secret.encode()).hexdigest()[:8]


class KeyTable:
    """The configured keys, looked up in constant time."""

    def __init__(self, keys: Mapping[str, frozenset[str]]) -> None:
        self._keys = [(secret.encode(), Principal(f"key:{key_id(secret)}", scopes)) for secret, scopes in keys.items()]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def lookup(self, presented: str) -> Principal | None:
        given, found = presented.encode(), None
        for secret, principal in self._keys:  # every key, no early exit: timing says nothing about which matched
            if hmac.compare_digest(given, secret):
                found = principal
        return found


class TokenVerifier:
    """JWT bearer tokens: HS256 with a shared secret or RS256 with a public key; `exp` and `sub` required."""

    def __init__(self, settings: Settings) -> None:
        self.audience, self.issuer = settings.jwt_audience, settings.jwt_issuer
        self.required = ["exp", "sub", *(["aud"] if self.audience else []), *(["iss"] if self.issuer else [])]
        if settings.jwt_public_key is not None:
            if not jwt.algorithms.has_crypto:
                raise ConfigError("FP_JWT_PUBLIC_KEY (RS256) needs the `cryptography` package: pip install cryptography")
            self.algorithm = "RS256"
            try:
                self.key: Any = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).prepare_key(
                    settings.jwt_public_key)
            except (ValueError, TypeError, jwt.InvalidKeyError) as exc:
                raise ConfigError(f"FP_JWT_PUBLIC_KEY is not a usable RSA public key: {exc}") from None
        else:
            assert settings.jwt_secret is not None, "TokenVerifier needs FP_JWT_SECRET or FP_JWT_PUBLIC_KEY"
            self.algorithm, self.key = "HS256", settings.jwt_secret

    def verify(self, token: str) -> Principal:
        """The token's principal and scopes; raises jwt.PyJWTError for a bad, expired or foreign token."""
        claims = jwt.decode(token, self.key, algorithms=[self.algorithm], audience=self.audience,
                            issuer=self.issuer, options={"require": self.required})
        return Principal(f"jwt:{claims['sub']}", token_scopes(claims))


def token_scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    """OAuth's space-separated `scope`, or a `scopes` list; scopes this server does not know are ignored."""
    scope, scopes = claims.get("scope"), claims.get("scopes")
    given = scope.split() if isinstance(scope, str) else scopes if isinstance(scopes, list) else []
    return frozenset(s for s in given if s in API_SCOPES)


class Access:
    """The per-route check: ``Depends(access.require(PREDICT))``. Open (loopback only) when nothing is configured."""

    def __init__(self, settings: Settings) -> None:
        self.keys = KeyTable(api_key_scopes(settings.api_keys))
        jwt_configured = settings.jwt_secret is not None or settings.jwt_public_key is not None
        self.tokens = TokenVerifier(settings) if jwt_configured else None
        self.open = not self.keys and self.tokens is None
        self.key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="One of FP_API_KEYS")
        self.bearer = HTTPBearer(auto_error=False, description="A JWT signed with FP_JWT_SECRET or FP_JWT_PUBLIC_KEY")
        challenges = [*(["APIKey"] if self.keys else []), *(["Bearer"] if self.tokens else [])]
        self.challenge = ", ".join(challenges)

    def require(self, scope: str) -> Callable[..., Awaitable[None]]:
        assert scope in API_SCOPES, f"unknown scope {scope!r}"
        if self.tokens is None:  # no bearer scheme in the OpenAPI spec unless tokens are accepted
            async def check_key(request: Request, key: str | None = Security(self.key_header)) -> None:  # noqa: B008
                self.authorize(request, scope, key, None)
            return check_key

        async def check(request: Request, key: str | None = Security(self.key_header),  # noqa: B008
                        bearer: HTTPAuthorizationCredentials | None = Security(self.bearer)) -> None:  # noqa: B008
            self.authorize(request, scope, key, bearer.credentials if bearer else None)
        return check

    def authorize(self, request: Request, scope: str, key: str | None, token: str | None) -> None:
        """Records the principal on the request (for the audit log), or raises the 401/403."""
        if self.open:
            request.state.principal = ANONYMOUS
            return
        request.state.principal = UNAUTHENTICATED
        if token is not None and self.tokens is not None:  # a bearer token wins over a key sent alongside it
            try:
                principal = self.tokens.verify(token)
            except jwt.PyJWTError as exc:
                raise HTTPException(401, detail=f"invalid bearer token: {exc}",
                                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}) from None
        elif key is not None and self.keys:
            found = self.keys.lookup(key)
            if found is None:
                raise HTTPException(403, detail="X-API-Key is not one of the configured keys")
            principal = found
        else:
            wanted = " or ".join([*(["an X-API-Key header"] if self.keys else []),
                                  *(["an Authorization: Bearer token"] if self.tokens else [])])
            raise HTTPException(401, detail=f"missing credentials: send {wanted}",
                                headers={"WWW-Authenticate": self.challenge})
        request.state.principal = principal.name
        if scope not in principal.scopes:
            headers = ({"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'}
                       if principal.name.startswith("jwt:") else None)
            raise HTTPException(403, detail=f"{principal.name} lacks the scope {scope!r} this route needs",
                                headers=headers)


# -- audit ---------------------------------------------------------------------------------------
class AuditLog:
    """One JSON line per request to a protected route, to a rotating file or stdout."""

    def __init__(self, target: str, max_bytes: int, backups: int) -> None:
        handler: logging.Handler
        if target == "-":
            handler = logging.StreamHandler(sys.stdout)
        else:
            handler = RotatingFileHandler(target, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(message)s"))
        self.handler = handler
        self.logger = logging.Logger("feature_platform.audit", logging.INFO)  # unmanaged: no root handlers, no config
        self.logger.propagate = False
        self.logger.addHandler(handler)

    @classmethod
    def from_settings(cls, settings: Settings) -> AuditLog | None:
        if settings.audit_log is None:
            return None
        try:
            return cls(settings.audit_log, settings.audit_log_max_bytes, settings.audit_log_backups)
        except OSError as exc:
            raise ConfigError(f"FP_AUDIT_LOG {settings.audit_log!r} cannot be opened: {exc}") from None

    def write(self, principal: str, route: str, method: str, status: int, users: int) -> None:
        self.logger.info(json.dumps({
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"), "principal": principal,
            "method": method, "route": route, "status": status, "users": users}, separators=(",", ":")))

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()


class AuditMiddleware(StatusObservingMiddleware):
    """After a request to one of ``protected`` (route templates), one audit line.

    The principal is what ``Access`` recorded on the request; ``users`` is what the handler recorded
    (``request.state.users``), else 1 for a ``{user_id}`` route and 0 for the rest."""

    def __init__(self, app: ASGIApp, audit: AuditLog, protected: set[str]) -> None:
        super().__init__(app)
        self.audit, self.protected = audit, protected

    def observe(self, scope: Scope, status: int, started: float) -> None:
        template = getattr(scope.get("route"), "path", None)
        if template in self.protected:
            state = scope.get("state") or {}
            users = state.get("users", 1 if "user_id" in scope.get("path_params", {}) else 0)
            self.audit.write(state.get("principal", UNAUTHENTICATED), template, scope["method"], status, users)
