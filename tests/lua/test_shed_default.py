"""nginx: a degrade without `key` sheds a share of one client's requests ($request_id), like the Python agent."""
from __future__ import annotations

from collections import Counter
from typing import Any

from rulegate.schema import validate_rule
from rulegate.store import RuleStore

from .conftest import Gateway


def test_shed_without_a_key_sheds_about_half_of_one_clients_requests(cluster: Any, redis_config: Any,
                                                                       tmp_path) -> None:
    ns = "shed-default-" + tmp_path.name[-6:].replace("_", "-")
    store = RuleStore.from_config(redis_config)
    rev = store.put_rule(ns, validate_rule({"id": "shed", "kind": "degrade",
                                            "route": {"host": "app.example.com", "path": "/"},
                                            "action": {"type": "reject"}, "percent": 50}), None, "t").revision
    store.close()
    gw = Gateway({"namespace": ns, "startup_nodes": list(cluster.startup_nodes), "refresh_interval": 0.2},
                 prefix=tmp_path / "gw")
    try:
        gw.start().wait_revision(rev)
        statuses = Counter(gw.get("/x").status for _ in range(400))
        assert set(statuses) == {200, 503}, statuses
        assert 0.35 < statuses[503] / 400 < 0.65, statuses
        assert gw.error_lines() == []
    finally:
        gw.stop()
