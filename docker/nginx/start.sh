#!/bin/sh
# Render /opt/rulegate/conf/rulegate.json (read by lua/conf/rulegate.conf's init_by_lua) from
# the environment, then run OpenResty in the foreground with prefix /opt/rulegate/ (so $prefix/lua
# is the mounted repo lua/ directory).
set -eu
: "${RULEGATE_NAMESPACE:?}" "${RULEGATE_REDIS_NODES:?}" "${RULEGATE_REDIS_PASSWORD:?set RG_GATEWAY_PASSWORD in .env}"
nodes=""
for n in $(echo "$RULEGATE_REDIS_NODES" | tr ',' ' '); do
    nodes="${nodes:+$nodes, }\"$n\""
done
umask 077
cat > /opt/rulegate/conf/rulegate.json <<JSON
{"namespace": "$RULEGATE_NAMESPACE", "startup_nodes": [$nodes],
 "username": "${RULEGATE_REDIS_USERNAME:-rg-gateway-$RULEGATE_NAMESPACE}", "password": "$RULEGATE_REDIS_PASSWORD",
 "gateway_id": "nginx-$(hostname)", "refresh_interval": 1, "max_stale": 30,
 "snapshot_path": "/var/lib/rulegate/$RULEGATE_NAMESPACE.snap", "read_replica": true,
 "default_upstream": "stable"}
JSON
mkdir -p /opt/rulegate/logs
exec openresty -p /opt/rulegate/ -c conf/nginx.conf -g 'daemon off;'
