"""The online feature store (docs/online.md): the offline features, served by event ID and entity key.

    from batchml.online import get_features, get_entity_state
    get_features(ids=["tx_1", "tx_2"])          # [{"id": "tx_1", "status": "found", "features": {...}}, ...]
    get_entity_state("customer", keys=["c1"])   # the window state a new event's features merge with

Both use the config of ``$BATCHML_ENV`` (or ``config=``) and keep one store per process. Written by
``batchml run materialize``; served over HTTP by ``batchml serve-features``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    from batchml.config import Config
    from batchml.online.client import OnlineStore

# (id of the config or of None, dataset) -> (the config, kept alive so its id stays unique; the store)
_stores: dict[tuple[int, str | None], tuple["Config | None", "OnlineStore"]] = {}
_lock = threading.Lock()


def store(config: "Config | None" = None, dataset: str | None = None) -> "OnlineStore":
    """The process's store for ``dataset`` (opened once: config parsing and connections are not per lookup)."""
    key = (id(config), dataset)
    with _lock:
        if key not in _stores:
            from batchml.config import load_config
            from batchml.online.client import OnlineStore

            _stores[key] = (config, OnlineStore(config or load_config(), dataset))
        return _stores[key][1]


def get_features(ids: Sequence[Any], *, dataset: str | None = None, config: "Config | None" = None) -> list[dict]:
    """Feature rows by event ID, one result per ID in order; ``status`` is ``found`` or ``not_found``."""
    return store(config, dataset).get_features(ids)


def get_entity_state(entity: str, keys: Sequence[Any], *, dataset: str | None = None,
                     config: "Config | None" = None) -> list[dict]:
    """Entity window states as of the last materialized date, one result per key in order."""
    return store(config, dataset).get_entity_state(entity, keys)
