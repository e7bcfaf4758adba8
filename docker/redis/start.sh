#!/bin/sh
# Render the ACL file and the node config from the passwords in the environment, then hand
# over to the image's entrypoint (which drops to the redis user).
set -eu
for var in RG_OPS_PASSWORD RG_ADMIN_PASSWORD RG_GATEWAY_PASSWORD; do
    eval "value=\${$var:-}"
    # a letter first and [A-Za-z0-9_-] only: safe in the ACL file and never parsed as a
    # number by ruleadmin's RULEADMIN_* env parsing
    if ! printf '%s' "$value" | grep -Eq '^[A-Za-z][A-Za-z0-9_-]{15,}$'; then
        echo "start.sh: $var must be set in .env: 16+ chars of [A-Za-z0-9_-] starting with a letter" >&2
        exit 1
    fi
done
# the gateway user's key patterns name the namespace: a namespace name holds no glob characters
printf '%s' "${RULEGATE_NAMESPACE:-}" | grep -Eq '^[a-z0-9][a-z0-9_.-]{0,63}$' || {
    echo "start.sh: RULEGATE_NAMESPACE must match [a-z0-9][a-z0-9_.-]{0,63}" >&2; exit 1; }
umask 077
mkdir -p /data
sed -e "s|@RG_OPS_PASSWORD@|$RG_OPS_PASSWORD|" \
    -e "s|@RG_ADMIN_PASSWORD@|$RG_ADMIN_PASSWORD|" \
    -e "s|@RG_GATEWAY_PASSWORD@|$RG_GATEWAY_PASSWORD|" \
    -e "s|@RULEGATE_NAMESPACE@|$RULEGATE_NAMESPACE|g" \
    /etc/rulegate/users.acl.template | grep -v '^#' > /data/users.acl
cat > /data/redis.conf <<CONF
include /etc/rulegate/redis.conf
aclfile /data/users.acl
masteruser rg-ops
masterauth $RG_OPS_PASSWORD
CONF
exec docker-entrypoint.sh redis-server /data/redis.conf "$@"
