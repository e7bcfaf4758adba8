"""rulegate.cluster (the Lua Redis Cluster client) against the real cluster, inside nginx."""

from __future__ import annotations

import contextlib
import random
import string
import time
from typing import Any, Iterator

import pytest
import redis
from redis.cluster import RedisCluster

from rulegate_dev.nginx import NginxLauncher

pytestmark = pytest.mark.integration


def node_client(addr: str) -> redis.Redis:
    host, port = addr.rsplit(":", 1)
    return redis.Redis(host=host, port=int(port), decode_responses=True, socket_timeout=5)


def rc(cluster: Any) -> RedisCluster:
    host, port = cluster.startup_nodes[0].rsplit(":", 1)
    return RedisCluster(host=host, port=int(port), decode_responses=True)


def call(ngx: NginxLauncher, cluster: Any, **req: Any) -> dict:
    req.setdefault("nodes", cluster.startup_nodes[:2])
    return ngx.json("/call", req)


def slot_master(cluster: Any, slot: int) -> tuple[str, str]:
    """Return (address, node id) of the master serving ``slot``."""
    c = node_client(cluster.startup_nodes[0])
    for first, last, master, *_ in c.execute_command("CLUSTER", "SLOTS"):
        if first <= slot <= last:
            addr = f"{master[0] or '127.0.0.1'}:{master[1]}"
            return addr, master[2]
    raise AssertionError(f"no master for slot {slot}")


def wait_replicas_gossiped(cluster: Any, slot: int, timeout: float = 10.0) -> None:
    """Wait until the nodes the client asks list a replica for ``slot`` in CLUSTER SLOTS."""
    deadline = time.monotonic() + timeout
    for addr in cluster.startup_nodes[:2]:
        c = node_client(addr)
        while True:
            ranges = c.execute_command("CLUSTER", "SLOTS")
            if any(lo <= slot <= hi and len(rest) >= 1 for lo, hi, _m, *rest in ranges):
                break
            assert time.monotonic() < deadline, f"{addr} lists no replica for slot {slot}"
            time.sleep(0.05)


def random_keys(n: int) -> list[str]:
    rnd = random.Random(5)
    keys = []
    alphabet = string.ascii_letters + string.digits + "{}:._-"
    for _ in range(n):
        keys.append("".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24))))
    keys += ["{rg:prod}:rules", "{rg:prod}:rev", "foo{}{bar}", "foo{{bar}}zap", "{}", "{a}", "\u00e9t\u00e9"]
    return keys


def test_crc16_matches_cluster_keyslot(lua_harness: NginxLauncher, cluster: Any) -> None:
    """The Lua slot of 2,000+ keys equals CLUSTER KEYSLOT of the real cluster."""
    keys = random_keys(2000)
    node = node_client(cluster.startup_nodes[0])
    want = [node.execute_command("CLUSTER", "KEYSLOT", k) for k in keys]
    got = lua_harness.json("/slots", keys)
    mismatches = [(k, g, w) for k, g, w in zip(keys, got, want) if g != w]
    assert mismatches == []


def test_set_get_roundtrip_on_every_master(lua_harness: NginxLauncher, cluster: Any) -> None:
    """Writes through the client land on the right master and read back, for keys on all shards."""
    py = rc(cluster)
    for i in range(30):
        key = f"rgtest:client:{i}"
        res = call(lua_harness, cluster, key=key, cmds=[["SET", key, f"v{i}"], ["GET", key]])
        assert res["ok"], res["err"]
        assert res["res"] == ["OK", f"v{i}"]
        assert py.get(key) == f"v{i}"


def test_pipeline_reads_rev_rules_and_meta_in_one_call(lua_harness: NginxLauncher, cluster: Any) -> None:
    """A pipeline on one slot returns each command's reply in order."""
    py = rc(cluster)
    py.set("{rgtest:pipe}:rev", 7)
    py.hset("{rgtest:pipe}:rules", mapping={"a": "1", "b": "2"})
    res = call(
        lua_harness, cluster, key="{rgtest:pipe}:rev", readonly=True,
        reset_stats=True,
        cmds=[["GET", "{rgtest:pipe}:rev"], ["HGETALL", "{rgtest:pipe}:rules"], ["GET", "{rgtest:pipe}:none"]],
    )
    assert res["ok"], res["err"]
    rev, rules, missing = res["res"]
    assert rev == "7"
    assert dict(zip(rules[::2], rules[1::2])) == {"a": "1", "b": "2"}
    assert missing is None
    assert res["stats"]["attempts"] == 1


def test_moved_repairs_a_stale_slot_map(lua_harness: NginxLauncher, cluster: Any) -> None:
    """With every slot mapped to one node, calls follow MOVED and the map is refreshed."""
    key = "{rgtest:moved}:k"
    slot = node_client(cluster.startup_nodes[0]).execute_command("CLUSTER", "KEYSLOT", key)
    owner, _ = slot_master(cluster, slot)
    wrong = next(a for a in (slot_master(cluster, s)[0] for s in (0, 8000, 16000)) if a != owner)
    res = call(lua_harness, cluster, key=key, cmds=[["SET", key, "x"]], poison_map=wrong,
               reset_stats=True, opts={"refresh_interval": 0})
    assert res["ok"], res["err"]
    assert res["stats"]["moved"] == 1
    assert res["stats"]["attempts"] == 2
    assert res["stats"]["refreshes"] == 1
    res = call(lua_harness, cluster, key=key, cmds=[["GET", key]], reset_stats=True, show_map=[slot])
    assert res["res"] == ["x"]
    assert res["stats"]["moved"] == 0
    assert res["map"][0][0] == owner


@contextlib.contextmanager
def migrating(cluster: Any, key: str) -> Iterator[redis.Redis]:
    """Key's slot migrating from its master to another one (MIGRATING / IMPORTING), the key deleted on both sides;
    yields the target's client (write the key there behind ASKING). Ends the migration and deletes the key."""
    slot = node_client(cluster.startup_nodes[0]).execute_command("CLUSTER", "KEYSLOT", key)
    src_addr, src_id = slot_master(cluster, slot)
    dst_addr, dst_id = next(
        slot_master(cluster, s) for s in (0, 8000, 16000) if slot_master(cluster, s)[0] != src_addr
    )
    src, dst = node_client(src_addr), node_client(dst_addr)
    src.delete(key)
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    try:
        yield dst
    finally:
        # a key written on the target: removed before the migration closes
        pipe = dst.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.delete(key)
        pipe.execute()
        src.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")
        dst.execute_command("CLUSTER", "SETSLOT", slot, "STABLE")


def test_ask_redirect_sends_asking(lua_harness: NginxLauncher, cluster: Any) -> None:
    """During a slot migration a missing key gets ASK; the client retries on the target with ASKING."""
    key = "{rgtest:ask}:k"
    with migrating(cluster, key):
        res = call(lua_harness, cluster, key=key, cmds=[["SET", key, "on-target"]], reset_stats=True)
        assert res["ok"], res["err"]
        assert res["stats"]["ask"] == 1
        assert res["stats"]["moved"] == 0


def scan_all(ngx: NginxLauncher, cluster: Any, key: str, **req: Any) -> tuple[dict[str, str], list[dict]]:
    """HSCAN ``key`` to its end through the Lua client with resp.read_scan: the fields and each call's result."""
    got: dict[str, str] = {}
    calls = []
    cursor = "0"
    while True:
        res = call(ngx, cluster, key=key, cmds=[["HSCAN", key, cursor, "COUNT", 50]], scan_reader=True, **req)
        assert res["ok"], res["err"]
        calls.append(res)
        reply = res["res"][0]
        assert set(reply) == {"cursor", "pairs"}, reply  # read in place, not by lua-resty-redis
        pairs = reply["pairs"] or []
        got.update(zip(pairs[::2], pairs[1::2]))
        cursor = reply["cursor"]
        if cursor == "0":
            return got, calls


def test_hscan_read_in_place_follows_moved(lua_harness: NginxLauncher, cluster: Any) -> None:
    """HSCAN replies read by resp.read_scan: every field and value as redis holds them, through a MOVED."""
    key = "{rgtest:scanread}:rules"
    py = rc(cluster)
    py.delete(key)
    rnd = random.Random(3)
    want = {f"r{i}": "".join(rnd.choice(string.printable) for _ in range(rnd.randint(0, 600))) for i in range(300)}
    py.hset(key, mapping=want)
    slot = node_client(cluster.startup_nodes[0]).execute_command("CLUSTER", "KEYSLOT", key)
    owner, _ = slot_master(cluster, slot)
    wrong = next(a for a in (slot_master(cluster, s)[0] for s in (0, 8000, 16000)) if a != owner)
    res = call(lua_harness, cluster, key=key, cmds=[["HSCAN", key, "0", "COUNT", 50]], scan_reader=True,
               poison_map=wrong, reset_stats=True, opts={"refresh_interval": 0})
    assert res["ok"], res["err"]
    assert res["stats"]["moved"] == 1
    got, _ = scan_all(lua_harness, cluster, key)
    assert got == want
    py.delete(key)


def test_hscan_read_in_place_follows_ask(lua_harness: NginxLauncher, cluster: Any) -> None:
    """During a slot migration the source answers ASK for a hash it no longer holds: the in-place reader reads
    ASKING's +OK and then the target's HSCAN reply off one connection."""
    key = "{rgtest:scanask}:rules"
    want = {f"r{i}": f"value {i} " * (i % 40) for i in range(120)}
    with migrating(cluster, key) as dst:
        pipe = dst.pipeline(transaction=False)
        pipe.execute_command("ASKING")
        pipe.hset(key, mapping=want)
        pipe.execute()
        got, calls = scan_all(lua_harness, cluster, key, reset_stats=True)
        assert got == want
        assert all(c["stats"]["ask"] == 1 for c in calls)


def test_replica_reads_use_readonly(lua_harness: NginxLauncher, cluster: Any) -> None:
    """With read_replica a read is served by a replica after READONLY, not redirected."""
    key = "{rgtest:replica}:k"
    py = rc(cluster)
    py.set(key, "r")
    slot = node_client(cluster.startup_nodes[0]).execute_command("CLUSTER", "KEYSLOT", key)
    master_addr, _ = slot_master(cluster, slot)
    node_client(master_addr).execute_command("WAIT", 1, 2000)
    wait_replicas_gossiped(cluster, slot)
    res = call(lua_harness, cluster, key=key, cmds=[["GET", key]], readonly=True, reset_stats=True,
               forget_map=True, opts={"read_replica": True}, show_map=[slot])
    assert res["ok"], res["err"]
    assert res["res"] == ["r"]
    assert res["stats"]["moved"] == 0
    assert res["map"][0][1], res
    replica = res["map"][0][1][0]
    info = node_client(replica).info("commandstats")
    assert info.get("cmdstat_readonly", {}).get("calls", 0) >= 1
    assert info.get("cmdstat_get", {}).get("calls", 0) >= 1


def test_auth_with_acl_user(lua_harness: NginxLauncher, cluster: Any) -> None:
    """A client with an ACL username/password authenticates; a wrong password fails cleanly."""
    nodes = [node_client(a) for a in cluster.startup_nodes]
    for n in nodes:
        n.execute_command("ACL", "SETUSER", "rgtest", "on", ">s3cret", "~rgtest:*", "~{rgtest:*",
                          "+@read", "+@write", "+cluster|slots", "+readonly", "+asking", "+ping")
    try:
        key = "{rgtest:auth}:k"
        good = call(lua_harness, cluster, key=key, cmds=[["SET", key, "1"]], forget_map=True,
                    opts={"username": "rgtest", "password": "s3cret"})
        assert good["ok"], good["err"]
        bad = call(lua_harness, cluster, key=key, cmds=[["SET", key, "1"]], forget_map=True,
                   opts={"username": "rgtest", "password": "wrong"})
        assert not bad["ok"]
        assert "authenticate" in bad["err"] or "WRONGPASS" in bad["err"]
    finally:
        for n in nodes:
            n.execute_command("ACL", "DELUSER", "rgtest")


@pytest.mark.parametrize("readonly", [False, True])
def test_budget_holds_under_a_paused_master(lua_harness: NginxLauncher, cluster: Any, readonly: bool) -> None:
    """Against a SIGSTOPped master no call exceeds max_attempts / max_connections and each returns promptly."""
    key = "{rgtest:stopped}:k"
    slot = node_client(cluster.startup_nodes[0]).execute_command("CLUSTER", "KEYSLOT", key)
    master_addr, _ = slot_master(cluster, slot)
    others = [a for a in cluster.startup_nodes if a != master_addr]
    call(lua_harness, cluster, key=key, cmds=[["SET", key, "1"]], forget_map=True)
    node = next(n for n in cluster.nodes if n.address == master_addr)
    cluster.pause(node)
    try:
        res = call(lua_harness, cluster, nodes=others[:2], key=key, repeat_n=5, reset_stats=True,
                   cmds=[["GET", key]] if readonly else [["SET", key, "2"]], readonly=readonly,
                   opts={"connect_timeout": 100, "send_timeout": 100, "read_timeout": 100})
    finally:
        cluster.resume(node)
    stats = res["stats"]
    if readonly:
        # the read falls back to the replica after one timeout on the master
        assert res["ok"], res["err"]
        assert stats["max_attempts_per_call"] == 2
    else:
        assert not res["ok"]
        assert "timeout" in res["err"]
    assert stats["calls"] == 5
    assert 1 <= stats["max_attempts_per_call"] <= 3
    assert 1 <= stats["max_connections_per_call"] <= 2
    assert stats["connections"] <= 10
    assert res["elapsed"] < 5 * 0.5
