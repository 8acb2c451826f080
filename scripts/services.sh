#!/usr/bin/env bash
# Makes sure every service the tests need is up on loopback: PostgreSQL (5432), MariaDB (3306),
# Redis (6379) and a six-node Redis Cluster (7000-7005, three masters with a replica each).
# Idempotent and quick when everything already runs.
#
#   bash scripts/services.sh               start whatever is down, wait until all answer
#   bash scripts/services.sh stop-cluster  stop the cluster nodes and forget their state
#
# Tests find the services through these variables (defaults shown):
#   TIDYSESSION_TEST_POSTGRES_URL       postgres://root@127.0.0.1/test
#   TIDYSESSION_TEST_MYSQL_URL          mysql://root@127.0.0.1/test
#   TIDYSESSION_TEST_REDIS_URL          redis://127.0.0.1:6379
#   TIDYSESSION_TEST_REDIS_CLUSTER_URL  redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002
set -euo pipefail

CLUSTER_PORTS=(7000 7001 7002 7003 7004 7005)
CLUSTER_DIR="${TMPDIR:-/tmp}/tidysession-cluster"
TIMEOUT_S="${TIDYSESSION_SERVICES_TIMEOUT:-60}"

log() { echo "services: $*" >&2; }
die() {
    log "ERROR: $*"
    exit 1
}

# wait_for NAME COMMAND...: retries COMMAND until it succeeds or the timeout passes.
wait_for() {
    local name=$1
    shift
    local deadline=$((SECONDS + TIMEOUT_S))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            die "$name did not come up within ${TIMEOUT_S}s (check: $*)"
        fi
        sleep 0.2
    done
}

postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }
mariadb_up() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P 3306 -u root ping >/dev/null 2>&1; }
redis_up() { [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]; }

ensure_postgres() {
    postgres_up && return
    command -v pg_ctlcluster >/dev/null || die "PostgreSQL is down and pg_ctlcluster is missing"
    log "starting PostgreSQL"
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n1)
    pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for PostgreSQL postgres_up
}

ensure_mariadb() {
    mariadb_up && return
    [ -x /usr/sbin/mariadbd ] || die "MariaDB is down and /usr/sbin/mariadbd is missing"
    log "starting MariaDB"
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld 2>/dev/null || true
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
    wait_for MariaDB mariadb_up
}

ensure_redis() {
    redis_up 6379 && return
    command -v redis-server >/dev/null || die "Redis is down and redis-server is missing"
    log "starting Redis on 6379"
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for "Redis 6379" redis_up 6379
}

cluster_node_ok() { redis-cli -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'; }

cluster_ok() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        cluster_node_ok "$port" || return 1
    done
    # Three masters, each with its replica: six known nodes on every node.
    [ "$(redis-cli -p "${CLUSTER_PORTS[0]}" cluster info | tr -d '\r' |
        sed -n 's/^cluster_known_nodes://p')" = "${#CLUSTER_PORTS[@]}" ]
}

start_cluster_node() {
    local port=$1 dir="$CLUSTER_DIR/$1"
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --cluster-enabled yes \
        --cluster-config-file "nodes-$port.conf" --cluster-node-timeout 5000 \
        --daemonize yes --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log"
}

stop_cluster() {
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
    done
    for port in "${CLUSTER_PORTS[@]}"; do
        local deadline=$((SECONDS + 10))
        while redis_up "$port" && ((SECONDS < deadline)); do sleep 0.1; done
    done
    rm -rf "$CLUSTER_DIR"
}

ensure_cluster() {
    cluster_ok && return
    local port
    for port in "${CLUSTER_PORTS[@]}"; do
        if ! redis_up "$port"; then
            log "starting cluster node $port"
            start_cluster_node "$port"
        fi
    done
    for port in "${CLUSTER_PORTS[@]}"; do
        wait_for "Redis cluster node $port" redis_up "$port"
    done
    # A cluster that was formed earlier may just need a moment to agree again.
    local deadline=$((SECONDS + 10))
    while ! cluster_ok && ((SECONDS < deadline)); do
        redis-cli -p "${CLUSTER_PORTS[0]}" cluster info | grep -q '^cluster_known_nodes:1' && break
        sleep 0.5
    done
    cluster_ok && return
    log "forming the Redis Cluster on ports ${CLUSTER_PORTS[*]}"
    for port in "${CLUSTER_PORTS[@]}"; do
        redis-cli -p "$port" flushall >/dev/null 2>&1 || true
        redis-cli -p "$port" cluster reset hard >/dev/null ||
            die "cannot reset cluster node $port"
    done
    local nodes=()
    for port in "${CLUSTER_PORTS[@]}"; do nodes+=("127.0.0.1:$port"); done
    redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null ||
        die "redis-cli --cluster create failed"
    wait_for "Redis Cluster (cluster_state:ok on every node)" cluster_ok
}

case "${1:-start}" in
start)
    ensure_postgres
    ensure_mariadb
    ensure_redis
    ensure_cluster
    ;;
stop-cluster)
    stop_cluster
    ;;
*)
    die "usage: $0 [start|stop-cluster]"
    ;;
esac
