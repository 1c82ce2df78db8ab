"""End-to-end tests of the mongowire stand-in: a real server process, the unmodified driver."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import json
import selectors
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pymongo
import pytest
from bson import ObjectId
from pymongo import AsyncMongoClient, DeleteOne, InsertOne, MongoClient, ReturnDocument, UpdateOne
from pymongo.common import MIN_SUPPORTED_WIRE_VERSION
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure, WriteError

from orchestrator.devstack.mongowire import serve

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
_db_names = itertools.count()


class Server:
    """A ``python -m orchestrator.devstack.mongowire`` child process."""

    def __init__(self, *extra_args: str) -> None:
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.devstack.mongowire", "--port", "0", *extra_args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=self._stderr,  # a file, so a chatty server can never block on a full pipe
            text=True,
        )
        self.url = self._read_ready_line(timeout_s=20)

    def _read_ready_line(self, timeout_s: float) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout_s):
                self.stop()
                raise AssertionError(f"mongowire server not ready: {self.stderr()}")
        line = self.process.stdout.readline()
        assert line, f"mongowire server exited: {self.stderr()}"
        assert line.startswith("ready mongodb://127.0.0.1:"), line
        assert line.endswith("/\n")
        return line.split()[1]

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Signal the process by its PID and wait for it; return its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise
        finally:
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._stderr.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    srv = Server()
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def client(server: Server) -> Iterator[MongoClient[dict[str, object]]]:
    with MongoClient(server.url, serverSelectionTimeoutMS=5000) as c:
        yield c


@pytest.fixture
def db_name() -> str:
    return f"test_{next(_db_names)}"


@pytest.fixture
def db(
    client: MongoClient[dict[str, object]], db_name: str
) -> pymongo.database.Database[dict[str, object]]:
    return client[db_name]


@pytest.fixture
async def aclient(server: Server) -> AsyncIterator[AsyncMongoClient[dict[str, object]]]:
    c: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        server.url, serverSelectionTimeoutMS=5000
    )
    try:
        yield c
    finally:
        await c.close()


# --- handshake -----------------------------------------------------------------------------


def test_sync_handshake_reports_a_writable_standalone(client: MongoClient[dict[str, object]]):
    hello = client.admin.command("hello")
    assert hello["isWritablePrimary"] is True
    assert hello["minWireVersion"] == 0
    assert hello["maxWireVersion"] >= max(17, MIN_SUPPORTED_WIRE_VERSION)
    assert hello["connectionId"] > 0
    assert "compression" not in hello
    assert client.admin.command("ping")["ok"] == 1.0
    assert client.server_info()["version"] == "7.0.0"
    assert client.topology_description.topology_type_name == "Single"


async def test_async_handshake_and_crud(aclient: AsyncMongoClient[dict[str, object]], db_name):
    assert (await aclient.admin.command("ping"))["ok"] == 1.0
    legacy = await aclient.admin.command("isMaster")
    assert legacy["ismaster"] is True
    coll = aclient[db_name].things
    await coll.insert_one({"_id": 1, "name": "a"})
    assert await coll.find_one({"_id": 1}) == {"_id": 1, "name": "a"}
    assert [d async for d in coll.find()] == [{"_id": 1, "name": "a"}]


# --- CRUD and reads ------------------------------------------------------------------------


def test_crud_round_trip(db):
    jobs = db.jobs
    inserted = jobs.insert_one({"name": "build", "state": "queued"}).inserted_id
    assert isinstance(inserted, ObjectId)
    assert jobs.find_one({"_id": inserted})["state"] == "queued"

    result = jobs.update_one({"_id": inserted}, {"$set": {"state": "running"}, "$inc": {"n": 1}})
    assert (result.matched_count, result.modified_count) == (1, 1)
    assert jobs.find_one({"_id": inserted}, {"_id": 0}) == {
        "name": "build",
        "state": "running",
        "n": 1,
    }

    replaced = jobs.replace_one({"_id": inserted}, {"name": "build", "state": "done"})
    assert replaced.modified_count == 1
    assert jobs.find_one({"_id": inserted}) == {"_id": inserted, "name": "build", "state": "done"}

    jobs.insert_many([{"k": i} for i in range(5)])
    many = jobs.update_many({"k": {"$gte": 2}}, {"$set": {"big": True}})
    assert (many.matched_count, many.modified_count) == (3, 3)
    assert jobs.delete_one({"k": 0}).deleted_count == 1
    assert jobs.delete_many({"big": True}).deleted_count == 3
    assert jobs.delete_many({"nothing": 1}).deleted_count == 0
    assert sorted(d["k"] for d in jobs.find({"k": {"$exists": True}})) == [1]


def test_find_sort_skip_limit_projection(db):
    db.items.insert_many([{"_id": i, "rank": i % 10, "x": i} for i in range(30)])
    found = list(db.items.find({"rank": {"$lt": 5}}, {"x": 0}).sort([("rank", -1), ("_id", 1)]))
    assert [d["_id"] for d in found[:3]] == [4, 14, 24]
    assert all("x" not in d for d in found)
    page = list(db.items.find({}, {"_id": 1}).sort("_id", -1).skip(5).limit(4))
    assert page == [{"_id": 24}, {"_id": 23}, {"_id": 22}, {"_id": 21}]
    assert db.items.find_one({"rank": 9}, sort=[("_id", -1)])["_id"] == 29


def test_iterating_500_documents_uses_getmore(db):
    db.many.insert_many([{"_id": i} for i in range(500)])
    first = db.command("find", "many")
    assert len(first["cursor"]["firstBatch"]) == 101
    assert first["cursor"]["id"] != 0
    db.command("killCursors", "many", cursors=[first["cursor"]["id"]])

    assert [d["_id"] for d in db.many.find().sort("_id", 1)] == list(range(500))
    assert [d["_id"] for d in db.many.find().batch_size(7)] == list(range(500))
    assert len(list(db.many.find().limit(250).batch_size(100))) == 250


def test_get_more_on_unknown_cursor_fails(db):
    with pytest.raises(OperationFailure) as info:
        db.command("getMore", 123456789, collection="nothing")
    assert info.value.code == 43


async def test_compare_and_set_racing_clients_have_one_winner(server: Server, db_name):
    clients: list[AsyncMongoClient[dict[str, object]]] = [
        AsyncMongoClient(server.url, serverSelectionTimeoutMS=5000) for _ in range(2)
    ]
    try:
        await clients[0][db_name].cas.insert_one({"_id": "job", "version": 0, "owner": None})

        async def claim(c: AsyncMongoClient[dict[str, object]], owner: str) -> int:
            result = await c[db_name].cas.update_one(
                {"_id": "job", "version": 0}, {"$set": {"owner": owner}, "$inc": {"version": 1}}
            )
            return result.modified_count

        wins = await asyncio.gather(claim(clients[0], "a"), claim(clients[1], "b"))
        assert sorted(wins) == [0, 1]
        doc = await clients[0][db_name].cas.find_one({"_id": "job"})
        assert doc is not None
        assert doc["version"] == 1
        assert doc["owner"] == ("a" if wins[0] else "b")

        successes = [0, 0]

        async def increment(index: int, rounds: int) -> None:
            coll = clients[index][db_name].cas
            for _ in range(rounds):
                current = await coll.find_one({"_id": "job"})
                assert current is not None
                result = await coll.update_one(
                    {"_id": "job", "version": current["version"]}, {"$inc": {"version": 1}}
                )
                successes[index] += result.modified_count

        await asyncio.gather(increment(0, 60), increment(1, 60))
        final = await clients[1][db_name].cas.find_one({"_id": "job"})
        assert final is not None
        assert final["version"] == 1 + sum(successes)
        assert sum(successes) >= 60
    finally:
        for c in clients:
            await c.close()


def test_upsert_inserts_then_matches(db):
    first = db.up.update_one({"name": "x"}, {"$set": {"n": 1}}, upsert=True)
    assert first.upserted_id is not None
    assert first.matched_count == 0
    second = db.up.update_one({"name": "x"}, {"$set": {"n": 2}}, upsert=True)
    assert (second.upserted_id, second.matched_count, second.modified_count) == (None, 1, 1)
    assert db.up.find_one({"name": "x"}, {"_id": 0}) == {"name": "x", "n": 2}
    replaced = db.up.replace_one({"_id": "r"}, {"v": 1}, upsert=True)
    assert replaced.upserted_id == "r"
    assert db.up.count_documents({}) == 2


def test_unordered_bulk_write_applies_all_but_the_duplicate(db):
    db.bulk.insert_one({"_id": 2})
    requests = [
        InsertOne({"_id": 1}),
        InsertOne({"_id": 2}),
        InsertOne({"_id": 3}),
        UpdateOne({"_id": 1}, {"$set": {"seen": True}}),
        DeleteOne({"_id": 3}),
    ]
    with pytest.raises(BulkWriteError) as info:
        db.bulk.bulk_write(requests, ordered=False)
    details = info.value.details
    assert [(e["index"], e["code"]) for e in details["writeErrors"]] == [(1, 11000)]
    assert details["nInserted"] == 2
    assert details["nModified"] == 1
    assert details["nRemoved"] == 1
    assert list(db.bulk.find().sort("_id", 1)) == [{"_id": 1, "seen": True}, {"_id": 2}]


def test_ordered_bulk_write_stops_at_the_duplicate(db):
    db.ordered.insert_one({"_id": 2})
    with pytest.raises(BulkWriteError) as info:
        db.ordered.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 3}], ordered=True)
    assert info.value.details["nInserted"] == 1
    assert info.value.details["writeErrors"][0]["index"] == 1
    assert sorted(d["_id"] for d in db.ordered.find()) == [1, 2]


def test_unique_index_raises_duplicate_key_error(db):
    db.users.create_index("email", unique=True)
    db.users.insert_one({"email": "a@example.com"})
    with pytest.raises(DuplicateKeyError) as info:
        db.users.insert_one({"email": "a@example.com"})
    assert info.value.code == 11000
    db.users.insert_one({"email": "b@example.com"})
    with pytest.raises(DuplicateKeyError):
        db.users.update_one({"email": "b@example.com"}, {"$set": {"email": "a@example.com"}})
    assert db.users.count_documents({"email": "b@example.com"}) == 1
    assert db.users.count_documents({}) == 2


def test_sparse_and_partial_unique_indexes(db):
    db.sp.create_index("code", unique=True, sparse=True)
    db.sp.insert_many([{"n": 1}, {"n": 2}])  # both lack the key: allowed by sparse
    db.pf.create_index(
        "slot", unique=True, partialFilterExpression={"active": True}, name="active_slot"
    )
    db.pf.insert_many([{"slot": 1, "active": False}, {"slot": 1, "active": True}])
    with pytest.raises(DuplicateKeyError):
        db.pf.insert_one({"slot": 1, "active": True})
    info = db.pf.index_information()["active_slot"]
    assert info["unique"] is True
    assert info["partialFilterExpression"] == {"active": True}


def test_find_and_modify_variants(db):
    db.fam.insert_many([{"_id": i, "prio": i, "state": "queued"} for i in range(3)])
    claimed = db.fam.find_one_and_update(
        {"state": "queued"},
        {"$set": {"state": "running"}},
        sort=[("prio", -1)],
        return_document=ReturnDocument.AFTER,
    )
    assert claimed == {"_id": 2, "prio": 2, "state": "running"}
    before = db.fam.find_one_and_update(
        {"_id": 0}, {"$inc": {"prio": 10}}, projection={"prio": 1, "_id": 0}
    )
    assert before == {"prio": 0}
    assert db.fam.find_one({"_id": 0})["prio"] == 10
    assert db.fam.find_one_and_update({"_id": 99}, {"$set": {"x": 1}}) is None
    created = db.fam.find_one_and_update(
        {"_id": 99}, {"$set": {"x": 1}}, upsert=True, return_document=ReturnDocument.AFTER
    )
    assert created == {"_id": 99, "x": 1}
    replaced = db.fam.find_one_and_replace(
        {"_id": 1}, {"prio": 5}, return_document=ReturnDocument.AFTER
    )
    assert replaced == {"_id": 1, "prio": 5}
    removed = db.fam.find_one_and_delete({"state": "running"})
    assert removed is not None
    assert removed["_id"] == 2
    assert db.fam.find_one({"_id": 2}) is None


def test_aggregate_match_group_sort(db):
    db.runs.insert_many(
        [{"team": t, "ms": ms} for t, ms in [("a", 10), ("b", 5), ("a", 30), ("c", 1), ("b", 7)]]
    )
    result = list(
        db.runs.aggregate(
            [
                {"$match": {"ms": {"$gt": 1}}},
                {"$group": {"_id": "$team", "total": {"$sum": "$ms"}, "n": {"$sum": 1}}},
                {"$sort": {"total": -1}},
            ]
        )
    )
    assert result == [{"_id": "a", "total": 40, "n": 2}, {"_id": "b", "total": 12, "n": 2}]
    assert list(result[0]) == ["_id", "total", "n"]
    db.big.insert_many([{"i": i} for i in range(300)])
    assert len(list(db.big.aggregate([{"$match": {}}], batchSize=50))) == 300


def test_count_documents_and_distinct(db):
    db.c.insert_many([{"k": i % 3, "tag": f"t{i % 2}"} for i in range(10)])
    assert db.c.count_documents({}) == 10
    assert db.c.count_documents({"k": 1}) == 3
    assert db.c.count_documents({}, skip=2, limit=5) == 5
    assert db.c.estimated_document_count() == 10
    assert sorted(db.c.distinct("k")) == [0, 1, 2]
    assert sorted(db.c.distinct("tag", {"k": 0})) == ["t0", "t1"]


def test_index_create_list_drop(db):
    assert db.idx.create_index([("a", 1), ("b", -1)]) == "a_1_b_-1"
    db.idx.create_index("c", name="by_c")
    names = {i["name"]: i["key"] for i in db.idx.list_indexes()}
    assert names == {"_id_": {"_id": 1}, "a_1_b_-1": {"a": 1, "b": -1}, "by_c": {"c": 1}}
    db.idx.drop_index("by_c")
    db.idx.drop_index([("a", 1), ("b", -1)])
    assert [i["name"] for i in db.idx.list_indexes()] == ["_id_"]
    with pytest.raises(OperationFailure) as info:
        db.idx.drop_index("nope")
    assert info.value.code == 27
    db.idx.create_index("z")
    db.idx.drop_indexes()
    assert list(db.idx.index_information()) == ["_id_"]
    assert list(db.missing.list_indexes()) == []


def test_collections_and_databases(client, db, db_name):
    db.create_collection("explicit")
    with pytest.raises(OperationFailure) as info:
        db.command("create", "explicit")
    assert info.value.code == 48
    db.implicit.insert_one({})
    assert sorted(db.list_collection_names()) == ["explicit", "implicit"]
    assert db.list_collection_names(filter={"name": "implicit"}) == ["implicit"]
    assert db_name in client.list_database_names()
    entry = next(d for d in client.list_databases() if d["name"] == db_name)
    assert entry["empty"] is False
    db.implicit.rename("renamed")
    assert sorted(db.list_collection_names()) == ["explicit", "renamed"]

    db.drop_collection("explicit")
    db.renamed.drop()
    db.never_existed.drop()
    assert db.list_collection_names() == []
    db.again.insert_one({"x": 1})
    client.drop_database(db_name)
    assert db_name not in client.list_database_names()
    assert db.again.count_documents({}) == 0


def test_unknown_command_is_operation_failure(db):
    with pytest.raises(OperationFailure) as info:
        db.command("frobnicate")
    assert info.value.code == 59
    assert info.value.details["codeName"] == "CommandNotFound"
    assert "no such command: 'frobnicate'" in str(info.value)


def _counters(db) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    status = db.client.admin.command("serverStatus")
    return status["opcounters"], status["metrics"]["commands"]


def _delta(after: dict, before: dict, name: str, field: str = "total") -> int:
    return after.get(name, {}).get(field, 0) - before.get(name, {}).get(field, 0)


def test_server_status_counts_operations_like_mongod(db):
    ops_before, commands_before = _counters(db)
    assert set(ops_before) == {"insert", "query", "update", "delete", "getmore", "command"}

    db.counted.insert_many([{"_id": i} for i in range(5)])  # one command, five documents
    with pytest.raises(DuplicateKeyError):
        db.counted.insert_one({"_id": 0})  # counted on receipt, as mongod does
    db.counted.bulk_write(
        [UpdateOne({"_id": 1}, {"$set": {"x": 1}}), UpdateOne({"_id": 2}, {"$set": {"x": 1}}),
         DeleteOne({"_id": 3})],
        ordered=False,
    )
    assert len(list(db.counted.find().batch_size(1))) == 4  # a find and getMores
    with pytest.raises(OperationFailure):
        db.command("frobnicate")

    ops, commands = _counters(db)
    getmores = ops["getmore"] - ops_before["getmore"]
    assert getmores >= 3
    assert {name: ops[name] - ops_before[name] for name in ops if name != "command"} == {
        "insert": 6, "query": 1, "update": 2, "delete": 1, "getmore": getmores,
    }
    # the unknown command and serverStatus itself, plus whatever the driver's monitor sent
    assert ops["command"] - ops_before["command"] >= 2
    per_message = {name: _delta(commands, commands_before, name)
                   for name in ("insert", "update", "delete", "find", "getMore")}
    assert per_message == {"insert": 2, "update": 1, "delete": 1, "find": 1, "getMore": getmores}
    assert _delta(commands, commands_before, "<UNKNOWN>") == 1
    assert _delta(commands, commands_before, "<UNKNOWN>", "failed") == 1
    assert _delta(commands, commands_before, "find", "failed") == 0
    assert _delta(commands, commands_before, "serverStatus") == 1


def test_bad_update_and_unsupported_features_fail_loudly(db):
    db.bad.insert_one({"_id": 1, "s": "text", "arr": [1, 2]})
    with pytest.raises(WriteError):
        db.bad.update_one({"_id": 1}, {"$inc": {"s": 1}})
    with pytest.raises(WriteError) as info:
        db.bad.update_one({"_id": 1}, {"$set": {"arr.$[x]": 0}}, array_filters=[{"x": 1}])
    assert info.value.code == 238
    assert db.bad.find_one({"_id": 1}) == {"_id": 1, "s": "text", "arr": [1, 2]}


def test_datetime_round_trip(server: Server, db):
    moment = datetime.datetime(2024, 5, 6, 7, 8, 9, 123000)
    db.times.insert_one({"_id": 1, "at": moment})
    assert db.times.find_one({"_id": 1})["at"] == moment
    assert db.times.count_documents({"at": {"$gt": moment - datetime.timedelta(seconds=1)}}) == 1
    aware = moment.replace(tzinfo=datetime.UTC)
    with MongoClient(server.url, tz_aware=True) as tz_client:
        assert tz_client[db.name].times.find_one({"_id": 1})["at"] == aware


def test_unacknowledged_writes_are_applied(db):
    unacked = db.get_collection("w0", write_concern=pymongo.WriteConcern(w=0))
    result = unacked.insert_one({"_id": "fire-and-forget"})
    assert result.acknowledged is False
    deadline = time.monotonic() + 5
    while db.w0.count_documents({}) == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert db.w0.find_one() == {"_id": "fire-and-forget"}


def test_separate_processes_share_data(server: Server, db, db_name):
    db.shared.insert_one({"_id": "from-test", "n": 1})
    script = (
        "import json, sys\n"
        "from pymongo import MongoClient\n"
        "with MongoClient(sys.argv[1], serverSelectionTimeoutMS=5000) as c:\n"
        "    coll = c[sys.argv[2]].shared\n"
        "    coll.insert_one({'_id': 'from-child', 'n': 2})\n"
        "    print(json.dumps(sorted(d['_id'] for d in coll.find())))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, server.url, db_name],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(child.stdout) == ["from-child", "from-test"]
    assert db.shared.find_one({"_id": "from-child"}) == {"_id": "from-child", "n": 2}


def test_snapshot_survives_restart(tmp_path: Path):
    path = tmp_path / "mongo.json"
    first = Server("--snapshot", str(path))
    try:
        with MongoClient(first.url) as c:
            c.app.jobs.create_index("key", unique=True)
            c.app.jobs.insert_one({"key": "k1", "at": datetime.datetime(2024, 1, 1), "n": 2**40})
            c.app.empty.insert_one({})
            c.app.empty.delete_many({})
    finally:
        assert first.stop(signal.SIGINT) == 0
    assert path.exists()
    second = Server("--snapshot", str(path))
    try:
        with MongoClient(second.url) as c:
            doc = c.app.jobs.find_one({}, {"_id": 0})
            assert doc == {"key": "k1", "at": datetime.datetime(2024, 1, 1), "n": 2**40}
            assert sorted(c.app.list_collection_names()) == ["empty", "jobs"]
            with pytest.raises(DuplicateKeyError):
                c.app.jobs.insert_one({"key": "k1"})
    finally:
        assert second.stop() == 0


async def test_in_process_serve_reports_its_port_and_stops_on_cancel():
    async with anyio.create_task_group() as tg:
        port = await tg.start(serve, "127.0.0.1", 0)
        assert isinstance(port, int)
        assert port > 0
        c: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            f"mongodb://127.0.0.1:{port}/", serverSelectionTimeoutMS=5000
        )
        try:
            await c.inproc.items.insert_many([{"_id": i} for i in range(150)])
            assert len(await c.inproc.items.find().to_list()) == 150
        finally:
            await c.close()
        tg.cancel_scope.cancel()
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", port)
