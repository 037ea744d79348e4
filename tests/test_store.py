"""Run cache: key canonicalisation, JSON round trips, concurrent writers, kill -9, bad files."""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pytest_scaling import store
from pytest_scaling.store import DEFAULT_CACHE_DIR, CacheError, ResultCache, run_key

BASE = dict(family_fingerprint="mlp:abc123", width=64, lr=1e-3, seed=0, device_kind="cpu",
            config={"steps": 100, "batch_size": 32, "optimizer": {"name": "adam", "betas": [0.9, 0.95]}})


# -- run_key -----------------------------------------------------------------------------------

def test_run_key_is_pinned():
    # Pinned: a change here silently retrains every cached run, so it must be deliberate
    # (bump SCHEMA_VERSION and update this value).
    assert run_key(**BASE) == "93c8f99dc8b6a60aed8b4d7dedbba098f47551017cd87f6eb1e1acb77c4932e4"


def test_run_key_ignores_dict_order_and_float_spelling():
    reordered = {"optimizer": {"betas": [0.9, 0.95], "name": "adam"}, "batch_size": 32, "steps": 100}
    assert run_key(**{**BASE, "config": reordered}) == run_key(**BASE)
    assert run_key(**{**BASE, "lr": 0.001}) == run_key(**BASE)
    assert run_key(**{**BASE, "lr": float("1e-3")}) == run_key(**BASE)
    with_wd = {**BASE, "config": {**BASE["config"], "weight_decay": 1e-4}}
    spelled = {**with_wd, "config": {**with_wd["config"], "weight_decay": 0.0001}}
    assert run_key(**with_wd) == run_key(**spelled)


@pytest.mark.parametrize("change", [
    {"family_fingerprint": "mlp:abc124"}, {"width": 128}, {"lr": 2e-3}, {"lr": 1.0000000000000002e-3},
    {"seed": 1}, {"device_kind": "cuda:H100"},
    {"config": {**BASE["config"], "steps": 101}},
    {"config": {**BASE["config"], "optimizer": {"name": "adam", "betas": [0.9, 0.99]}}},
    {"config": {**BASE["config"], "extra": None}},
], ids=["fingerprint", "width", "lr", "lr-next-float", "seed", "device-kind", "config-value",
        "nested-config-value", "config-extra-key"])
def test_run_key_changes_with_every_input(change):
    assert run_key(**{**BASE, **change}) != run_key(**BASE)


def test_run_key_includes_schema_version(monkeypatch):
    before = run_key(**BASE)
    monkeypatch.setattr(store, "SCHEMA_VERSION", store.SCHEMA_VERSION + 1)
    assert run_key(**BASE) != before


# -- storage -----------------------------------------------------------------------------------

def test_round_trip_with_nan_and_inf_survives_reopen(tmp_path):
    path = tmp_path / "deep" / "dir" / "cache.sqlite"
    record = {"loss": [2.5, float("nan"), float("inf"), float("-inf")], "diverged": True,
              "probes": {"logit_max": float("nan"), "steps": [1, 2, 4]}, "note": "ünïcode"}
    with ResultCache(path) as cache:
        cache.put_many({"k": record, "other": {"loss": [1.0]}})
        assert len(cache) == 2
    with ResultCache(path) as cache:
        got = cache.get_many(["k"])["k"]
        assert len(cache) == 2
    assert got["loss"][0] == 2.5 and math.isnan(got["loss"][1])
    assert got["loss"][2:] == [math.inf, -math.inf]
    assert math.isnan(got["probes"]["logit_max"])
    assert (got["diverged"], got["note"], got["probes"]["steps"]) == (True, "ünïcode", [1, 2, 4])


def test_records_are_plain_json_rows(tmp_path):
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as cache:
        cache.put_many({"k": {"loss": 1.5}})
    with sqlite3.connect(path) as conn:
        key, record, created_at, version = conn.execute(
            "SELECT key, record, created_at, schema_version FROM runs").fetchone()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert (key, record, version) == ("k", '{"loss": 1.5}', store.SCHEMA_VERSION)
    assert abs(created_at - time.time()) < 60


def test_get_many_omits_missing_keys_and_put_many_replaces(tmp_path):
    with ResultCache.in_dir(tmp_path / DEFAULT_CACHE_DIR) as cache:
        assert cache.path == tmp_path / ".scaling" / "cache.sqlite"
        assert cache.get_many([]) == {} and cache.get_many(["nope"]) == {}
        cache.put_many({f"k{i}": {"i": i} for i in range(1200)})  # more keys than one SELECT takes
        cache.put_many({"k3": {"i": -3}})
        keys = [f"k{i}" for i in range(0, 1300, 2)]
        got = cache.get_many(keys)
        assert set(got) == {f"k{i}" for i in range(0, 1200, 2)}
        assert got["k2"] == {"i": 2} and cache.get_many(["k3"]) == {"k3": {"i": -3}}
        assert len(cache) == 1200


def test_put_many_is_all_or_nothing(tmp_path):
    with ResultCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(TypeError):
            cache.put_many({"good": {"x": 1}, "bad": {"x": object()}})
        assert len(cache) == 0
        cache.put_many({"good": {"x": 1}})  # the connection is still usable
        assert len(cache) == 1


def test_pickled_cache_reopens_its_own_connection(tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    cache.put_many({"a": {"x": 1}})
    copy = pickle.loads(pickle.dumps(cache))
    copy.put_many({"b": {"x": 2}})
    assert cache.get_many(["a", "b"]) == copy.get_many(["a", "b"]) == {"a": {"x": 1}, "b": {"x": 2}}
    cache.close()
    copy.close()
    assert len(cache) == 2  # reopens after close
    cache.close()


# -- several processes -------------------------------------------------------------------------

def _write_records(path: Path, worker: int, barrier) -> None:
    barrier.wait()
    cache = ResultCache(path)
    for i in range(50):
        cache.put_many({f"w{worker}-{i}": {"worker": worker, "i": i, "curve": [i / 7] * 50}})
        assert cache.get_many([f"w{worker}-{i}"])  # interleave reads with the other writers
    cache.close()


def test_concurrent_writers_share_one_cache(tmp_path):
    """Four processes start writing into a cache none of them has created yet."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(4)
    workers = [ctx.Process(target=_write_records, args=(tmp_path / "c.sqlite", w, barrier)) for w in range(4)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(60)
    assert [p.exitcode for p in workers] == [0, 0, 0, 0]
    with ResultCache(tmp_path / "c.sqlite") as cache:
        assert len(cache) == 200
        got = cache.get_many([f"w{w}-{i}" for w in range(4) for i in range(50)])
    for w in range(4):
        assert [got[f"w{w}-{i}"]["i"] for i in range(50)] == list(range(50))


def _use_inherited(cache: ResultCache) -> None:
    cache.put_many({"child": {"x": 2}})
    assert cache.get_many(["parent", "child"]) == {"parent": {"x": 1}, "child": {"x": 2}}
    assert len(store._INHERITED) == 1  # the parent's connection, set aside unused


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="no fork()")
def test_forked_child_reopens_instead_of_reusing_the_parent_connection(tmp_path):
    with ResultCache(tmp_path / "c.sqlite") as cache:
        cache.put_many({"parent": {"x": 1}})
        child = multiprocessing.get_context("fork").Process(target=_use_inherited, args=(cache,))
        child.start()
        child.join(30)
        assert child.exitcode == 0
        cache.put_many({"parent-again": {"x": 3}})
        assert len(cache) == 3


WRITER = textwrap.dedent("""
    import sys
    from pytest_scaling.store import ResultCache
    cache = ResultCache(sys.argv[1])
    batch = 0
    while True:
        cache.put_many({f"{batch}-{i}": {"batch": batch, "i": i, "curve": [batch + i / 10] * 300}
                        for i in range(20)})
        print(batch, flush=True)
        batch += 1
""")


def test_kill_9_mid_sweep_leaves_whole_commits(tmp_path):
    path = tmp_path / "c.sqlite"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        for line in writer.stdout:  # let it commit a few batches, then kill it while it runs on
            if int(line) >= 4:
                break
        time.sleep(0.05)
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    with ResultCache(path) as cache:
        n = len(cache)
        got = cache.get_many([f"{b}-{i}" for b in range(n // 20 + 2) for i in range(20)])
    assert n >= 5 * 20 and n % 20 == 0 and len(got) == n  # acknowledged batches, no partial one
    for key, record in got.items():
        batch, i = map(int, key.split("-"))
        assert record == {"batch": batch, "i": i, "curve": [batch + i / 10] * 300}


# -- files that are not this cache -------------------------------------------------------------

def _assert_cache_error(path: Path, *phrases: str) -> None:
    with pytest.raises(CacheError) as info:
        ResultCache(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "delete it or run with --scaling-no-cache" in message
    error = info.value  # no chained sqlite traceback under the message
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    for phrase in phrases:
        assert phrase in message


@pytest.mark.parametrize("content", [
    random.Random(0).randbytes(4096), b"loss,lr\n0.5,0.001\n", b"SQLite format 3\x00",
], ids=["random-bytes", "text", "bare-header"])
def test_non_sqlite_file_is_refused(tmp_path, content):
    path = tmp_path / "cache.sqlite"
    path.write_bytes(content)
    _assert_cache_error(path, "not a database")
    assert path.read_bytes() == content


def test_truncated_cache_is_refused(tmp_path):
    path = tmp_path / "cache.sqlite"
    with ResultCache(path) as cache:
        cache.put_many({f"k{i}": {"curve": [float(i)] * 500} for i in range(100)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _assert_cache_error(path, "malformed")


@pytest.mark.parametrize("schema", [
    ["CREATE TABLE results (id INTEGER PRIMARY KEY, loss REAL)"],
    ["CREATE TABLE meta (a, b)", "CREATE TABLE runs (key, record)"],
    ["CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT)", "CREATE TABLE runs (key, record)",
     "INSERT INTO meta VALUES ('application_id', 'another tool'), ('schema_version', '1')"],
], ids=["other-tables", "other-meta-columns", "other-application-id"])
def test_foreign_sqlite_database_is_refused_and_left_untouched(tmp_path, schema):
    path = tmp_path / "cache.sqlite"
    with sqlite3.connect(path) as conn:
        for statement in schema:
            conn.execute(statement)
    conn.close()
    before = path.read_bytes()
    _assert_cache_error(path, "SQLite database of something else")
    assert path.read_bytes() == before and not Path(f"{path}-wal").exists()


@pytest.mark.parametrize("version", ["0", "2"])
def test_other_schema_version_is_refused(tmp_path, version):
    path = tmp_path / "cache.sqlite"
    ResultCache(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (version,))
    conn.close()
    _assert_cache_error(path, f"schema version {version}", f"uses version {store.SCHEMA_VERSION}")
