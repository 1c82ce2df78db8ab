"""Save and restore all databases as canonical Extended JSON (never pickle)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from bson import json_util

from orchestrator.devstack.mongowire.admin import INDEX_OPTIONS

_FORMAT = "mongowire-snapshot/1"


def dump(client: Any) -> str:
    """Every database, collection, document and secondary index as Extended JSON."""
    databases: dict[str, Any] = {}
    for db_name in client.list_database_names():
        database = client[db_name]
        collections: dict[str, Any] = {}
        for name in database.list_collection_names():
            collection = database[name]
            indexes = [
                {"name": index_name, **info}
                for index_name, info in collection.index_information().items()
                if index_name != "_id_"
            ]
            collections[name] = {"documents": list(collection.find()), "indexes": indexes}
        databases[db_name] = collections
    return json_util.dumps(
        {"format": _FORMAT, "databases": databases},
        json_options=json_util.CANONICAL_JSON_OPTIONS,
    )


def load(client: Any, text: str) -> None:
    """Restore what :func:`dump` wrote into ``client`` (expected to be empty)."""
    data = json_util.loads(text, json_options=json_util.CANONICAL_JSON_OPTIONS)
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError("not a mongowire snapshot")
    for db_name, collections in data["databases"].items():
        database = client[db_name]
        for name, content in collections.items():
            database.create_collection(name)
            collection = database[name]
            if content["documents"]:
                collection.insert_many(content["documents"])
            for index in content["indexes"]:
                options = {k: index[k] for k in INDEX_OPTIONS if k in index}
                keys = [(str(field), direction) for field, direction in index["key"]]
                collection.create_index(keys, name=index["name"], **options)


def save_file(client: Any, path: Path) -> None:
    """Write a snapshot atomically: a crash mid-write leaves the previous file intact."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(dump(client), encoding="utf-8")
    os.replace(tmp, path)


def load_file(client: Any, path: Path) -> bool:
    """Load ``path`` if it exists; return whether it did."""
    if not path.exists():
        return False
    load(client, path.read_text(encoding="utf-8"))
    return True
