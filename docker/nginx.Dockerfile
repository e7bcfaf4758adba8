# OpenResty + the one Lua library the image lacks (lua-MessagePack, Debian's lua-messagepack,
# installed under /usr/share/lua/5.1, which lua/conf/rulegate.conf puts on lua_package_path).
# lua-resty-core, resty.redis and cjson ship with OpenResty. The repo's lua/ is mounted at
# /opt/rulegate/lua by docker-compose.yml, not copied, so rule-router changes need no rebuild.
ARG OPENRESTY_IMAGE=openresty/openresty:bookworm
FROM ${OPENRESTY_IMAGE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends lua-messagepack \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /opt/rulegate/conf /opt/rulegate/logs /var/lib/rulegate \
    && chown nobody /var/lib/rulegate
COPY docker/nginx/start.sh /usr/local/bin/rulegate-nginx
EXPOSE 8080
CMD ["rulegate-nginx"]
