"""``batchml serve-features``: the online store over HTTP (Starlette on uvicorn; contract in docs/online.md).

    GET  /health                     200 {"status": "ok", ...} or 503 {"status": "unavailable", "error"}
    POST /v1/features                {"ids": [...]} -> {"contract", "results": [...], "found", "missing"}
    GET  /v1/features/{id}           200 one found result, 404 {"id", "status": "not_found"}
    POST /v1/entities/{entity}       {"keys": [...]} -> {"contract", "results": [...], "found", "missing"}

Every request is one JSON line in the access log: time, request id (``X-Request-ID`` if the caller sent
one, else a new one; echoed in the response), method, path, status, latency, found and missing counts.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time
import uuid

from batchml.online import records as R
from batchml.online.backends import BackendUnavailable
from batchml.online.client import OnlineStore


class AccessLog:
    """JSONL lines to a file (appended) or to stdout; one lock, one flush per line."""

    def __init__(self, path: str | None):
        self._lock = threading.Lock()
        if path in (None, "-"):
            self._out = sys.stdout
        else:
            from pathlib import Path

            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._out = open(path, "a", buffering=1, encoding="utf-8")

    def write(self, entry: dict) -> None:
        line = json.dumps(entry, separators=(",", ":"))
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def close(self) -> None:
        if self._out is not sys.stdout:
            self._out.close()


class AccessLogMiddleware:
    """Pure ASGI (no per-request task or body copy): times the request and writes its access-log line."""

    def __init__(self, app, log: AccessLog):
        self.app, self.log = app, log

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode("latin-1")[:128] or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status: dict = {}

        def log_once():
            if "logged" in status:
                return
            status["logged"] = True
            state = scope["state"]
            self.log.write({"time": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
                            "request_id": request_id, "method": scope["method"], "path": scope["path"],
                            "status": status.get("code", 500),
                            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
                            "found": state.get("found"), "missing": state.get("missing")})

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode("latin-1"))]
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                log_once()  # before the last byte leaves: a caller that got its answer finds the line
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            log_once()  # the app failed before it answered


def create_app(store: OnlineStore, access_log: AccessLog, max_ids: int = 1000):
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    def answer(request, results: list[dict], single: bool = False) -> JSONResponse:
        found = sum(r["status"] == "found" for r in results)
        request.state.found, request.state.missing = found, len(results) - found
        if single:
            return JSONResponse(R.jsonable(results[0]), status_code=200 if found else 404)
        return JSONResponse({"contract": R.CONTRACT, "dataset": store.dataset, "results": R.jsonable(results),
                             "found": found, "missing": len(results) - found})

    async def items(request, field: str) -> list | JSONResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _error(400, "the body is not JSON")
        values = body.get(field) if isinstance(body, dict) else None
        if not isinstance(values, list) or not values:
            return _error(400, f'the body must be {{"{field}": [...]}} with at least one item')
        if len(values) > max_ids:
            return _error(400, f"at most {max_ids} {field} per request, got {len(values)}")
        return values

    async def features(request):
        ids = await items(request, "ids")
        if isinstance(ids, JSONResponse):
            return ids
        if not all(isinstance(i, (str, int)) and not isinstance(i, bool) for i in ids):
            return _error(400, "ids must be strings or integers")
        return answer(request, await run_in_threadpool(store.get_features, ids))

    async def feature(request):
        return answer(request, await run_in_threadpool(store.get_features, [request.path_params["id"]]), single=True)

    async def entities(request):
        entity = request.path_params["entity"]
        if entity not in store.spec.entities:
            return _error(404, f"unknown entity {entity!r}; entities: {', '.join(store.spec.entities)}")
        keys = await items(request, "keys")
        if isinstance(keys, JSONResponse):
            return keys
        try:
            return answer(request, await run_in_threadpool(store.get_entity_state, entity, keys))
        except ValueError as exc:  # a key that does not name the entity's key columns
            return _error(400, str(exc))

    async def health(request):
        try:
            status = await run_in_threadpool(store.status)
        except BackendUnavailable as exc:
            return JSONResponse({"status": "unavailable", "contract": R.CONTRACT, "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "contract": R.CONTRACT, **status})

    routes = [Route("/health", health), Route("/v1/features", features, methods=["POST"]),
              Route("/v1/features/{id}", feature), Route("/v1/entities/{entity}", entities, methods=["POST"])]
    app = Starlette(routes=routes, exception_handlers={BackendUnavailable: _unavailable})
    return AccessLogMiddleware(app, access_log)


def _error(status: int, message: str):
    from starlette.responses import JSONResponse

    return JSONResponse({"contract": R.CONTRACT, "error": message}, status_code=status)


async def _unavailable(request, exc: BackendUnavailable):
    return _error(503, str(exc))


def serve(config, dataset: str | None = None, host: str | None = None, port: int | None = None) -> None:
    """Run the service until interrupted (one process; lookups run on uvicorn's thread pool)."""
    import uvicorn

    settings = config.online.serve
    log = AccessLog(settings.access_log or f"{config.home}/online/access.jsonl")
    store = OnlineStore(config, dataset)
    try:
        uvicorn.run(create_app(store, log, settings.max_ids), host=host or settings.host, port=port or settings.port,
                    log_level="warning", access_log=False)
    finally:
        store.close()
        log.close()

