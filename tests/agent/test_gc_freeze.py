"""gc.freeze() after a full reload is the default, and an embedding application can turn it off."""
from __future__ import annotations

import gc

from gateway_agent import RuleClient

from .conftest import split_rule


def test_a_full_reload_freezes_only_when_asked(cluster, store, namespace):
    """With gc_freeze=False a full reload leaves the collector's permanent generation as it was (and the collector
    enabled); by default it freezes what exists, the loaded rules included."""
    store.put_rule(namespace, split_rule("r1", "a"), None, "test")
    gc.unfreeze()
    for freeze in (False, True):
        client = RuleClient(cluster.startup_nodes, namespace, notifications=False, gc_freeze=freeze)
        syncer = client.syncer
        try:
            syncer.slots.refresh(client.budget, syncer.pool)
            assert syncer.sync_once()
            assert len(syncer.current.ruleset) == 1 and gc.isenabled()
            assert (gc.get_freeze_count() > 0) is freeze
        finally:
            syncer.pool.close()
    gc.unfreeze()
