#!/bin/sh
# One-shot: wait for the six nodes, create the cluster (3 masters + 3 replicas) unless it
# exists, then wait until it is really ready: cluster_state:ok on every node and every replica
# with master_link_status:up (a replica that never finished its first sync cannot be promoted).
# Runs as the ops user; the password comes from RG_OPS_PASSWORD via REDISCLI_AUTH.
set -eu
: "${RG_OPS_PASSWORD:?set RG_OPS_PASSWORD in .env}"
: "${CLUSTER_NODES:?list host:port of the six nodes}"
export REDISCLI_AUTH="$RG_OPS_PASSWORD"
TIMEOUT=${CLUSTER_INIT_TIMEOUT:-120}

cli() { # cli host:port args...
    node=$1; shift
    redis-cli --no-auth-warning --user rg-ops -h "${node%:*}" -p "${node##*:}" "$@"
}

deadline=$(( $(date +%s) + TIMEOUT ))
wait_for() { # wait_for "what" command...
    what=$1; shift
    until "$@"; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "cluster-init: timed out after ${TIMEOUT}s waiting for $what" >&2
            exit 1
        fi
        sleep 1
    done
}

for n in $CLUSTER_NODES; do
    wait_for "$n to answer PING" sh -c "[ \"\$(redis-cli --no-auth-warning --user rg-ops -h ${n%:*} -p ${n##*:} ping 2>/dev/null)\" = PONG ]"
done
echo "cluster-init: all nodes answer"

first=${CLUSTER_NODES%% *}
if cli "$first" cluster info | grep -q '^cluster_slots_assigned:16384'; then
    echo "cluster-init: cluster already created, not touching it"
else
    # shellcheck disable=SC2086
    redis-cli --no-auth-warning --user rg-ops --cluster create $CLUSTER_NODES \
        --cluster-replicas 1 --cluster-yes
fi

ready() {
    for n in $CLUSTER_NODES; do
        info=$(cli "$n" cluster info 2>/dev/null) || return 1
        echo "$info" | grep -q '^cluster_state:ok' || return 1
        echo "$info" | grep -q '^cluster_slots_assigned:16384' || return 1
        repl=$(cli "$n" info replication 2>/dev/null) || return 1
        if echo "$repl" | grep -q '^role:slave'; then
            echo "$repl" | grep -q '^master_link_status:up' || return 1
        fi
    done
}
wait_for "cluster_state:ok and every replica's master_link_status:up" ready
echo "cluster-init: cluster ready"
cli "$first" cluster nodes
