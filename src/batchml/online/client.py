"""Reading the online store: features by event ID, entity states by key, a new event's features.

Every answer names what it is: ``status`` ``found`` with the run date and table version the record
came from, or ``not_found``: a missing ID never comes back as zeros or as an empty feature row.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Iterable, Mapping, Sequence

from batchml.config import Config
from batchml.features.build import feature_spec
from batchml.online import records as R
from batchml.online.backends import Backend, BackendUnavailable, open_backend
from batchml.online.state import event_features, fingerprint


class OnlineStore:
    """One dataset's records in the configured backend. Thread-safe; keep one per process."""

    def __init__(self, config: Config, dataset: str | None = None, backend: Backend | None = None):
        self.dataset, self.spec = feature_spec(config, dataset)
        self.backend = backend or open_backend(config)
        self._schemas: dict[str, list[list[str]]] = {}

    # -- by event ID ----------------------------------------------------------------------------------
    def get_features(self, ids: Sequence[Any]) -> list[dict[str, Any]]:
        """One result per requested ID, in order: ``{"id", "status": "found", "run_date", "table_version",
        "features": {column: value}}`` or ``{"id", "status": "not_found"}``."""
        keys = [R.event_key(self.dataset, i) for i in ids]
        stored = self.backend.get(keys)
        docs = {k: json.loads(v) for k, v in stored.items()}
        self._load_schemas({d["schema"] for d in docs.values()} - set(self._schemas))
        out = []
        for i, key in zip(ids, keys):
            doc = docs.get(key)
            if doc is None:
                out.append({"id": i, "status": "not_found"})
                continue
            out.append({"id": i, "status": "found", "run_date": doc["run_date"], "table_version": doc["table_version"],
                        "features": R.decode_row(self._schemas[doc["schema"]], doc["values"])})
        return out

    def _load_schemas(self, ids: set[str]) -> None:
        keys = {R.meta_key(self.dataset, f"schema/{i}"): i for i in ids}
        found = self.backend.get(list(keys))
        for key, schema_id in keys.items():
            if key not in found:  # records without their schema: the store is damaged, say so
                raise BackendUnavailable(f"online store: schema {schema_id} of stored records is missing")
            self._schemas[schema_id] = json.loads(found[key])

    # -- by entity key --------------------------------------------------------------------------------
    def get_entity_state(self, entity: str, keys: Sequence[Any]) -> list[dict[str, Any]]:
        """One result per key (a mapping of the entity's key columns, a tuple in their order, or a scalar
        for one-column keys): ``{"entity", "key", "status": "found", "as_of", "table_version", "state"}`` or
        ``not_found`` (no event of that key in the lookback as of the current states' date). A record serves
        from the night that wrote it until a night changes or deletes it (``batchml.online.changes``), unless a
        full run since rewrote every state (``base`` in ``meta/state``; stores from before it: ``as_of``)."""
        if entity not in self.spec.entities:
            raise ValueError(f"unknown entity {entity!r}; entities: {', '.join(self.spec.entities)}")
        columns = self.spec.entities[entity].keys
        values = [self._key_values(columns, k) for k in keys]
        record_keys = [R.entity_key(self.dataset, entity, v) for v in values]
        meta = R.meta_key(self.dataset, "state")
        stored = self.backend.get(record_keys + [meta])
        current = json.loads(stored[meta]) if meta in stored else None
        out = []
        for v, key in zip(values, record_keys):
            doc = json.loads(stored[key]) if key in stored else None
            base = {"entity": entity, "key": dict(zip(columns, v))}
            if doc is None or current is None or doc["run_date"] < current.get("base", current["as_of"]):
                out.append({**base, "status": "not_found"})  # written before the last full run: stale
            else:  # a record serves until a night changes it; one newer than the meta: a night writing now
                src = doc if doc["run_date"] > current["as_of"] else current
                out.append({**base, "status": "found", "as_of": max(doc["run_date"], current["as_of"]),
                            "table": src["table"], "table_version": src["table_version"], "state": doc["state"]})
        return out

    @staticmethod
    def _key_values(columns: list[str], key: Any) -> list:
        if isinstance(key, Mapping):
            if set(key) != set(columns):
                raise ValueError(f"key {dict(key)} must name exactly the columns {columns}")
            return [key[c] for c in columns]
        values = list(key) if isinstance(key, (list, tuple)) else [key]
        if len(values) != len(columns):
            raise ValueError(f"key {key!r} must have {len(columns)} value(s): {columns}")
        return values

    def state_meta(self) -> dict | None:
        return self._meta("state")

    def _meta(self, name: str) -> dict | None:
        value = self.backend.get([R.meta_key(self.dataset, name)]).get(R.meta_key(self.dataset, name))
        return None if value is None else json.loads(value)

    # -- a new event ----------------------------------------------------------------------------------
    def features_for_event(self, event: Mapping[str, Any], earlier: Iterable[Mapping[str, Any]] = ()) -> dict:
        """The window features and time since last of ``event`` (its source columns, event time an aware
        datetime on the day after the states' date), from the stored states plus ``earlier`` (the events
        of that day before it; see ``batchml.online.state`` for exactly what this reproduces)."""
        current = self.state_meta()
        if current is None:
            raise BackendUnavailable(f"online store holds no entity states for {self.dataset}: run materialize")
        if current["spec"] != fingerprint(self.spec):
            raise ValueError("the stored entity states were built for other feature definitions; re-materialize")
        states = {}
        for name, entity in self.spec.entities.items():
            key = [event[k] for k in entity.keys]
            if any(v is None for v in key):
                continue
            found = self.get_entity_state(name, [key])[0]
            states[name] = found["state"] if found["status"] == "found" else None
        return event_features(self.spec, dt.date.fromisoformat(current["as_of"]), states, event, list(earlier))

    # -- health ---------------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """For ``/health``: the backend answers, and what it holds (raises BackendUnavailable)."""
        self.backend.ping()
        keys = {name: R.meta_key(self.dataset, name) for name in ("latest", "state")}
        stored = self.backend.get(list(keys.values()))
        latest, state = (json.loads(stored[k]) if k in stored else None for k in keys.values())
        return {"backend": self.backend.name, "dataset": self.dataset,
                "latest_run_date": latest["run_date"] if latest else None,
                "table_version": latest["table_version"] if latest else None,
                "state_as_of": state["as_of"] if state else None}

    def close(self) -> None:
        self.backend.close()
