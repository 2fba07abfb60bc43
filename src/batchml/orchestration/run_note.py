"""The DAG-run note: the business date a run processed and what came of it, e.g. ``2024-03-01 · gate blocked:
drift:amount`` or ``2024-03-01 · FALLBACK 2783/2783 rows``, shown on the run's page and in the grid.

The note is written from the lake's own tables (``lake_state``), so it says the same whichever task writes it and
whether the job ran under spark-submit or on EMR. Airflow 3.3's Task SDK has no call that sets a run's note (a
runtime note API is proposed upstream, apache/airflow#69403), so a task sets it through Airflow's public REST API
(``PATCH /api/v2/dags/{dag}/dagRuns/{run}``) with the connection ``orchestration.airflow_api_conn_id``: an
``http`` connection to the API server, with a user and password (a token is fetched) or a token as password.
Without that connection the task logs the note and moves on; the local ``dag.test()`` runner sets the note in
the metadata DB itself (``local.set_note``).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

from batchml.orchestration import lake_state

if TYPE_CHECKING:
    from batchml.config import Config

log = logging.getLogger(__name__)
SEP = " · "
MAX_NOTE = 1000  # the REST API's limit
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)  # an API server on SQLite answers 500 while another writer holds the lock


def outcome(config: Config, dataset: str, run_date: dt.date, failed_task: str | None = None) -> str:
    """The note for one run date as the lake shows it now (``failed_task``: a task that crashed)."""
    parts = [run_date.isoformat()]
    blocked = lake_state.blocked_checks(config, dataset, run_date)
    if blocked:
        return SEP.join(parts + [f"gate blocked: {_checks(blocked)}"])
    released = lake_state.released_checks(config, dataset, run_date)
    if released:
        parts.append(f"released {_checks([f'{t}: {c}' for t, c, _ in released])} "
                     f"({', '.join(sorted({by for _, _, by in released}))})")
    if failed_task:
        parts.append(f"FAILED at {failed_task}")
    scored = lake_state.scoring_outcome(config, dataset, run_date)
    if scored and scored["fallback_rows"]:
        parts.append(f"FALLBACK {scored['fallback_rows']}/{scored['rows']} rows")
    elif scored:
        parts.append(f"scored {scored['rows']} rows")
    request = lake_state.pending_retraining(config, dataset, run_date)
    if request:
        kinds = sorted({r["kind"] for r in request.get("reasons", [])})
        parts.append(f"alert: {', '.join(kinds)}; retraining requested")
    return SEP.join(parts)[:MAX_NOTE]


def _checks(items: list[str]) -> str:
    """``table: check`` items as check names, with the table only when several tables are involved."""
    tables = {i.split(": ", 1)[0] for i in items}
    return ", ".join(i if len(tables) > 1 else i.split(": ", 1)[1] for i in items)


def publish(context, config: Config, note: str) -> bool:
    """Set ``note`` on this task's DAG run through the REST API; False (and a log line) when not configured."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    conn_id = config.orchestration.airflow_api_conn_id
    ti = context["ti"]
    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        log.info("run note: %s (not set on the run: no %r connection to the Airflow API, see docs/airflow.md)",
                 note, conn_id)
        return False
    base = _base_url(conn)
    token = _token(base, conn.login, conn.password) if conn.login else conn.password
    path = f"/api/v2/dags/{_q(ti.dag_id)}/dagRuns/{_q(ti.run_id)}?update_mask=note"
    _request("PATCH", base + path, {"note": note}, token)
    log.info("run note: %s", note)
    return True


def _base_url(conn) -> str:
    host = conn.host or ""
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}" + (f":{conn.port}" if conn.port else "")
    return host.rstrip("/")


def _token(base: str, login: str, password: str) -> str:
    return _request("POST", f"{base}/auth/token", {"username": login, "password": password})["access_token"]


def _request(method: str, url: str, body: dict, token: str | None = None) -> dict:
    """One API call; a 5xx answer or a refused connection is tried again after each of ``RETRY_DELAYS``."""
    for delay in RETRY_DELAYS:
        try:
            return _send(method, url, body, token)
        except _Transient as exc:
            log.info("%s; trying again in %.1f s", exc, delay)
            time.sleep(delay)
    return _send(method, url, body, token)  # the last try: its error reaches the caller


class _Transient(RuntimeError):
    """A server error or a refused connection: the same call may succeed a moment later."""


def _send(method: str, url: str, body: dict, token: str | None) -> dict:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as response:  # noqa: S310 - the configured API server
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        message = f"Airflow API {method} {url}: HTTP {exc.code}: {exc.read()[:300]!r}"
        if exc.code >= 500:
            raise _Transient(message) from None
        raise RuntimeError(message) from None
    except urllib.error.URLError as exc:  # refused or unreachable; HTTPError (a subclass) is handled above
        raise _Transient(f"Airflow API {method} {url}: {exc.reason}") from None


def _q(text: str) -> str:
    return urllib.parse.quote(text, safe="")
