#!/usr/bin/env bash
# HTTP benchmark: bare axum vs tidysession vs tower-sessions, on memory, SQLite, PostgreSQL,
# MariaDB/MySQL and Redis stores.
#
#   bash bench/run.sh                                 # every store, 3 rounds of 10 s per scenario
#   BENCH_SECONDS=30 BENCH_ROUNDS=5 bash bench/run.sh
#   BENCH_STORES="postgres redis" bash bench/run.sh   # bare axum and these stores only
#
# Environment:
#   BENCH_SECONDS       length of each measurement (default 10), after a 2 s warm-up
#   BENCH_ROUNDS        interleaved rounds; the tables show medians (default 3)
#   BENCH_STORES        stores to run, of: memory sqlite postgres mysql redis (default all)
#   BENCH_BYTES_WRITES  one-key writes in the bytes-to-the-store pass (default 50)
#   BENCH_POSTGRES_URL  default postgres://root@127.0.0.1/test
#   BENCH_MYSQL_URL     default mysql://root@127.0.0.1/test (MariaDB or MySQL)
#   BENCH_REDIS_URL     default redis://127.0.0.1:6379
#   BENCH_REDIS_TOWER_DB  Redis database for tower-sessions' store, which has no key prefix
#                       (default 15; must be empty or the bench's own)
# The servers of the chosen stores must be running (scripts/services.sh starts them); the
# script checks that they answer before it starts. Each server start works in a schema,
# tables or key prefix of its own, removed when it stops (see bench/src/main.rs).
#
# Time: 1 + 2 x (number of stores) implementations, four scenarios each per round, each
# measurement BENCH_SECONDS + about 2.5 s (2 s warm-up, server start and stop). All five
# stores (11 implementations, 44 measurements a round): about 9 min a round with the
# defaults (about 28 min for 3 rounds), about 24 min a round with BENCH_SECONDS=30 (about
# 2 h for 5 rounds); plus the build and the bytes pass (under a minute). A smoke run,
# BENCH_SECONDS=2 BENCH_ROUNDS=1, takes about 3 min.
#
# Builds bench-server (bench/target, release), then runs each scenario against every
# implementation back to back, each on a freshly started server on 127.0.0.1, in rounds (the
# order rotates each round), and reports the median of the rounds: drift in the machine's
# speed then hits all implementations alike. Raw wrk output goes to bench/results/ (git-ignored);
# the tables go to docs/benchmarks.md. All traffic stays on 127.0.0.1 and every step is
# bounded in time.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS="$BENCH_DIR/results"
DOC="$ROOT/docs/benchmarks.md"
SERVER="$BENCH_DIR/target/release/bench-server"

BENCH_SECONDS="${BENCH_SECONDS:-10}"
if ! [[ "$BENCH_SECONDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "BENCH_SECONDS must be a positive integer (got '$BENCH_SECONDS')" >&2
    exit 2
fi
BENCH_ROUNDS="${BENCH_ROUNDS:-3}"
if ! [[ "$BENCH_ROUNDS" =~ ^[1-9][0-9]*$ ]]; then
    echo "BENCH_ROUNDS must be a positive integer (got '$BENCH_ROUNDS')" >&2
    exit 2
fi
WARMUP_SECONDS=2
THREADS=1
CONNECTIONS=32
BASE_PORT=18080

ALL_STORES=(memory sqlite postgres mysql redis)
read -r -a STORES <<<"${BENCH_STORES:-${ALL_STORES[*]}}"
if [[ ${#STORES[@]} -eq 0 ]]; then
    echo "BENCH_STORES is empty; choose from: ${ALL_STORES[*]}" >&2
    exit 2
fi
for store in "${STORES[@]}"; do
    if ! [[ " ${ALL_STORES[*]} " == *" $store "* ]]; then
        echo "BENCH_STORES: unknown store '$store'; choose from: ${ALL_STORES[*]}" >&2
        exit 2
    fi
done
# In the order of ALL_STORES, each once.
read -r -a STORES <<<"$(for s in "${ALL_STORES[@]}"; do [[ " ${STORES[*]} " == *" $s "* ]] && printf '%s ' "$s"; done)"
BYTES_WRITES="${BENCH_BYTES_WRITES:-50}"
if ! [[ "$BYTES_WRITES" =~ ^[1-9][0-9]*$ ]]; then
    echo "BENCH_BYTES_WRITES must be a positive integer (got '$BYTES_WRITES')" >&2
    exit 2
fi

IMPLS=(axum)
for store in "${STORES[@]}"; do IMPLS+=("tidysession-$store"); done
for store in "${STORES[@]}"; do IMPLS+=("tower-sessions-$store"); done
# Stores with a server, whose traffic the bytes pass counts.
NET_STORES=()
for store in "${STORES[@]}"; do
    case "$store" in postgres | mysql | redis) NET_STORES+=("$store") ;; esac
done

log() { echo "[bench] $*" >&2; }

# --- tools -------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    log "installing wrk"
    if ! apt-get install -y wrk >/dev/null 2>&1; then
        apt-get update >/dev/null
        apt-get install -y wrk >/dev/null
    fi
fi
for tool in curl python3 wrk; do
    command -v "$tool" >/dev/null 2>&1 || { echo "missing tool: $tool" >&2; exit 1; }
done

log "building bench-server (release)"
(cd "$BENCH_DIR" && CARGO_TARGET_DIR="$BENCH_DIR/target" cargo build --release --quiet)

# --- store servers -----------------------------------------------------------------------
# Each must answer before anything runs; their versions go into the report.
SERVER_VERSIONS=()
for store in "${NET_STORES[@]}"; do
    if ! answer="$("$SERVER" --check "$store" 2>&1)"; then
        echo "$answer" >&2
        echo "the $store server does not answer: start it (scripts/services.sh starts PostgreSQL," \
            "MariaDB and Redis), point BENCH_POSTGRES_URL / BENCH_MYSQL_URL / BENCH_REDIS_URL at it," \
            "or leave $store out of BENCH_STORES" >&2
        exit 1
    fi
    log "${answer#bench-server: }"
    SERVER_VERSIONS+=("${answer##*: }")
done

# --- server lifecycle --------------------------------------------------------------------
declare -A PID URL
WORK="$(mktemp -d)"

# Removes the SQLite files a server reported ("bench-server: database <path>").
remove_server_db() {
    local log="$RESULTS/$1.server.log" db
    [[ -f "$log" ]] || return 0
    db="$(sed -n 's/^bench-server: database //p' "$log" | tail -n 1)"
    if [[ -n "$db" ]]; then
        rm -f -- "$db" "$db-wal" "$db-shm"
    fi
}

stop_servers() {
    local imp pid
    for imp in "${!PID[@]}"; do
        pid="${PID[$imp]}"
        kill "$pid" 2>/dev/null || true
        # Bounded wait (a server store's namespace is removed on the way out), then force: a
        # later start removes what is left.
        for _ in $(seq 600); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        remove_server_db "$imp"
        unset "PID[$imp]"
    done
}

cleanup() {
    stop_servers
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts bench-server for impl $1 on a free port from $2 upwards, with any further arguments;
# sets PID[$1] and URL[$1].
start_server() {
    local imp="$1" port="$2" log
    shift 2
    while port_in_use "$port"; do
        port=$((port + 1))
    done
    log="$RESULTS/$imp.server.log"
    "$SERVER" --impl "$imp" --addr "127.0.0.1:$port" "$@" >>"$log" 2>&1 &
    PID[$imp]=$!
    URL[$imp]="http://127.0.0.1:$port"
    for _ in $(seq 300); do # at most ~30 s (a start first removes stale namespaces)
        if ! kill -0 "${PID[$imp]}" 2>/dev/null; then
            echo "bench-server --impl $imp exited early:" >&2
            cat "$log" >&2
            unset "PID[$imp]"
            exit 1
        fi
        if curl -sf -m 1 -o /dev/null "${URL[$imp]}/untouched"; then
            return 0
        fi
        sleep 0.1
    done
    echo "bench-server --impl $imp did not answer on ${URL[$imp]}/untouched" >&2
    exit 1
}

# --- wrk ---------------------------------------------------------------------------------
# run_wrk <seconds> <out-file> <url> [cookie-value]
run_wrk() {
    local seconds="$1" out="$2" url="$3" cookie="${4:-}"
    local args=(-t"$THREADS" -c"$CONNECTIONS" -d"${seconds}s" --latency)
    if [[ -n "$cookie" ]]; then
        args+=(-H "Cookie: id=$cookie")
    fi
    timeout "$((seconds + 30))" wrk "${args[@]}" "$url" >"$out" 2>&1
}

# parse_wrk <file> -> "rps<TAB>p99_ms<TAB>requests<TAB>non2xx<TAB>socket_errors"
parse_wrk() {
    awk '
        function ms(v,   n) {
            n = v + 0
            if (v ~ /us$/) return n / 1000
            if (v ~ /ms$/) return n
            if (v ~ /m$/)  return n * 60000
            if (v ~ /s$/)  return n * 1000
            return n
        }
        /^Requests\/sec:/              { rps = $2 }
        /^[ \t]+99%/                    { p99 = ms($2) }
        /requests in/                   { reqs = $1 }
        /Non-2xx or 3xx responses:/     { non2xx = $NF }
        /Socket errors:/ {
            gsub(",", "", $0)
            sock = $4 + $6 + $8 + $10
        }
        END {
            if (rps == "" || p99 == "") exit 1
            printf "%s\t%.3f\t%s\t%d\t%d\n", rps, p99, reqs, non2xx, sock
        }
    ' "$1"
}

# --- run ---------------------------------------------------------------------------------
mkdir -p "$RESULTS"
rm -f "$RESULTS"/*.txt "$RESULTS"/*.log "$RESULTS"/results.tsv
TSV="$RESULTS/results.tsv"
printf 'round\timpl\tscenario\trps\tp99_ms\trequests\tnon2xx\tsocket_errors\tcpu_us\n' >"$TSV"

# CPU time (user + system, in clock ticks) the process has used so far.
cpu_ticks() {
    awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# record <round> <impl> <scenario-slug> <scenario-title> <url> [cookie]
record() {
    local round="$1" imp="$2" slug="$3" title="$4" url="$5" cookie="${6:-}"
    run_wrk "$WARMUP_SECONDS" "$WORK/warmup.txt" "$url" "$cookie"
    local out="$RESULTS/$imp.$slug.$round.txt" before after
    before="$(cpu_ticks "${PID[$imp]}")"
    run_wrk "$BENCH_SECONDS" "$out" "$url" "$cookie"
    after="$(cpu_ticks "${PID[$imp]}")"
    local parsed
    if ! parsed="$(parse_wrk "$out")"; then
        echo "cannot parse wrk output $out:" >&2
        cat "$out" >&2
        exit 1
    fi
    # Server CPU per request, in microseconds: less sensitive than requests/s to what else
    # the machine is doing.
    local cpu_us
    cpu_us="$(awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$(echo "$parsed" | cut -f3)" \
        'BEGIN { printf "%.2f", t / hz * 1e6 / n }')"
    printf '%s\t%s\t%s\t%s\t%s\n' "$round" "$imp" "$title" "$parsed" "$cpu_us" >>"$TSV"
    log "round $round, $title, $imp: $(echo "$parsed" | awk -F'\t' '{printf "%s req/s, p99 %s ms, %s non-2xx, %s socket errors", $1, $2, $4, $5}')"
}

# pad_session <impl> -> the cookie of a new session padded to ~2 KB (empty for bare axum)
pad_session() {
    local imp="$1" jar="$WORK/$1.jar" cookie
    rm -f "$jar"
    curl -sf -m 5 -c "$jar" -o /dev/null "${URL[$imp]}/pad"
    cookie="$(awk '$6 == "id" { print $7 }' "$jar")"
    if [[ "$imp" != axum && -z "$cookie" ]]; then
        echo "$imp: /pad set no 'id' cookie" >&2
        exit 1
    fi
    echo "$cookie"
}

# Every measurement gets a fresh server: what one scenario leaves behind (a million sessions
# from the no-cookie writes, a grown SQLite file) must not slow the next one down.
# measure <round> <impl> <slug> <title> <path> <with-cookie: yes|no>
measure() {
    local round="$1" imp="$2" slug="$3" title="$4" path="$5" with_cookie="$6" cookie=""
    start_server "$imp" "$BASE_PORT"
    if [[ "$with_cookie" == yes ]]; then
        # One session, padded to ~2 KB, shared by all connections of the run.
        cookie="$(pad_session "$imp")"
    fi
    record "$round" "$imp" "$slug" "$title" "${URL[$imp]}$path" "$cookie"
    if [[ "$slug" == write-with-cookie && "$imp" != axum ]]; then
        local n
        n="$(curl -sf -m 5 -H "Cookie: id=$cookie" "${URL[$imp]}/read")"
        if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
            echo "$imp: the write run did not reach the session (n=$n)" >&2
            exit 1
        fi
    fi
    stop_servers
}

# --- bytes sent to the store --------------------------------------------------------------
# A separate, sequential pass through bench-server's counting proxy (which would skew the
# throughput runs): create a ~2 KB session with /pad, send BYTES_WARMUP uncounted /write
# requests (the pool's connections prepare their statements), then BYTES_WRITES /write
# requests with its cookie, each changing one key. /__store_bytes answers
# "<sent> <received>".
BYTES_WARMUP=5
BYTES_TSV="$RESULTS/bytes.tsv"
printf 'impl\twrites\tsent_per_write\treceived_per_write\tpad_sent\n' >"$BYTES_TSV"

store_bytes() {
    curl -sf -m 5 "${URL[$1]}/__store_bytes"
}

# writes <impl> <cookie> <count>: that many /write requests, one after another, on one
# keep-alive connection.
writes() {
    local urls=() i
    for i in $(seq "$3"); do urls+=("${URL[$1]}/write"); done
    curl -sf -m 120 -H "Cookie: id=$2" "${urls[@]}" >/dev/null
    sleep 0.3 # anything the app sends the store after the last response has gone out
}

measure_bytes() {
    local imp="$1" cookie start padded warmed after n sent0 pad_sent sent1 sent2 recv1 recv2
    start_server "$imp" "$BASE_PORT" --count-store-bytes
    start="$(store_bytes "$imp")"
    cookie="$(pad_session "$imp")"
    sleep 0.3
    padded="$(store_bytes "$imp")"
    writes "$imp" "$cookie" "$BYTES_WARMUP"
    warmed="$(store_bytes "$imp")"
    writes "$imp" "$cookie" "$BYTES_WRITES"
    after="$(store_bytes "$imp")"
    n="$(curl -sf -m 5 -H "Cookie: id=$cookie" "${URL[$imp]}/read")"
    if [[ "$n" != "$((BYTES_WARMUP + BYTES_WRITES))" ]]; then
        echo "$imp: after $((BYTES_WARMUP + BYTES_WRITES)) writes the session holds n=$n" >&2
        exit 1
    fi
    stop_servers
    read -r sent0 _ <<<"$start"
    read -r pad_sent _ <<<"$padded"
    read -r sent1 recv1 <<<"$warmed"
    read -r sent2 recv2 <<<"$after"
    printf '%s\t%s\t%s\t%s\t%s\n' "$imp" "$BYTES_WRITES" \
        "$(( (sent2 - sent1) / BYTES_WRITES ))" "$(( (recv2 - recv1) / BYTES_WRITES ))" \
        "$((pad_sent - sent0))" >>"$BYTES_TSV"
    log "bytes, $imp: $(( (sent2 - sent1) / BYTES_WRITES )) sent to the store per one-key write"
}

for store in "${NET_STORES[@]}"; do
    measure_bytes "tidysession-$store"
    measure_bytes "tower-sessions-$store"
done

# --- throughput ----------------------------------------------------------------------------
for round in $(seq "$BENCH_ROUNDS"); do
    # Rotate the order so that no implementation always runs first or last.
    order=("${IMPLS[@]:$(( (round - 1) % ${#IMPLS[@]} ))}" "${IMPLS[@]:0:$(( (round - 1) % ${#IMPLS[@]} ))}")
    for imp in "${order[@]}"; do measure "$round" "$imp" untouched "untouched" /untouched no; done
    for imp in "${order[@]}"; do measure "$round" "$imp" read-with-cookie "read with cookie" /read yes; done
    for imp in "${order[@]}"; do measure "$round" "$imp" write-with-cookie "write with cookie" /write yes; done
    for imp in "${order[@]}"; do measure "$round" "$imp" write-without-cookie "write without cookie" /write no; done
done

# --- report ------------------------------------------------------------------------------
TIDY_COMMIT="$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git -C "$ROOT" --no-optional-locks status --porcelain -- crates 2>/dev/null)" ]]; then
    TIDY_COMMIT="$TIDY_COMMIT + uncommitted changes in crates/"
fi

mkdir -p "$(dirname "$DOC")"
export BENCH_DATE="$(date -u '+%Y-%m-%d %H:%M UTC')"
export BENCH_CORES="$(nproc)"
export BENCH_CPU="$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || true)"
export BENCH_MEM="$(free -g 2>/dev/null | awk '/^Mem:/ { print $2 " GiB" }' || true)"
export BENCH_WRK="$(wrk --version 2>&1 | head -n1 | awk '{ print $2 }' || true)"
export BENCH_RUSTC="$(rustc --version | awk '{ print $1, $2 }')"
export BENCH_COMMIT="$TIDY_COMMIT" BENCH_SECONDS BENCH_ROUNDS WARMUP_SECONDS THREADS CONNECTIONS
export BENCH_BYTES_WRITES="$BYTES_WRITES" BENCH_BYTES_WARMUP="$BYTES_WARMUP"
export BENCH_IMPLS="${IMPLS[*]}" BENCH_STORE_LIST="${STORES[*]}"
BENCH_SERVERS="$(IFS=';'; echo "${SERVER_VERSIONS[*]}")"
export BENCH_SERVERS="${BENCH_SERVERS//;/, }"
python3 - "$TSV" "$BYTES_TSV" "$DOC" "$BENCH_DIR/Cargo.lock" <<'PY'
import csv, os, re, statistics, sys

E = os.environ
tsv, bytes_tsv, doc, lock = sys.argv[1:5]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
byte_rows = {r["impl"]: r for r in csv.DictReader(open(bytes_tsv), delimiter="\t")}

def locked(name):
    m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), open(lock).read())
    return m.group(1) if m else "?"

STORE_NAMES = {"memory": "memory", "sqlite": "SQLite", "postgres": "PostgreSQL",
               "mysql": "MariaDB/MySQL", "redis": "Redis"}
impls = E["BENCH_IMPLS"].split()
stores = E["BENCH_STORE_LIST"].split()
net_stores = [s for s in stores if s in ("postgres", "mysql", "redis")]
scenarios = [
    ("untouched", "GET /untouched, no cookie; the handler never touches the session."),
    ("read with cookie", "GET /read with the cookie of one existing ~2 KB session; reads key `n`."),
    ("write with cookie", "GET /write with that same cookie; reads `n`, stores n+1 (the session keeps its ~2 KB pad)."),
    ("write without cookie", "GET /write, no cookie: every request creates and stores a new session."),
]
# The median round of each implementation and scenario (by requests/s); errors are summed
# over all rounds.
res = {}
for key in {(r["impl"], r["scenario"]) for r in rows}:
    runs = sorted((r for r in rows if (r["impl"], r["scenario"]) == key), key=lambda r: float(r["rps"]))
    median = dict(runs[len(runs) // 2])
    median["rps"] = statistics.median(float(r["rps"]) for r in runs)
    median["p99_ms"] = statistics.median(float(r["p99_ms"]) for r in runs)
    median["cpu_us"] = statistics.median(float(r["cpu_us"]) for r in runs)
    median["spread"] = max(float(r["rps"]) for r in runs) / min(float(r["rps"]) for r in runs)
    for field in ("non2xx", "socket_errors", "requests"):
        median[field] = sum(int(r[field]) for r in runs)
    res[key] = median

def ratio(a, b):
    return "%.2f" % (a / b) if b else "n/a"

def ratios(store, title):
    """tidysession ÷ tower-sessions on `store` in scenario `title`: req/s, p99, CPU."""
    t = res[("tidysession-" + store, title)]
    o = res[("tower-sessions-" + store, title)]
    return (ratio(t["rps"], o["rps"]), ratio(t["p99_ms"], o["p99_ms"]), ratio(t["cpu_us"], o["cpu_us"]))

out = []
w = out.append
w("# Benchmarks")
w("")
w("Throughput and tail latency of one axum app with the same four routes, served with no session")
w("layer (bare axum, the ceiling), with tidysession and with tower-sessions, each over the same")
w("stores: %s. Generated by `bench/run.sh`; do not edit by hand." % ", ".join(STORE_NAMES[s] for s in stores))
w("")
w("- Date: " + E["BENCH_DATE"])
w("- Machine: %s cores (%s), %s memory" % (E["BENCH_CORES"], E["BENCH_CPU"] or "unknown CPU", E["BENCH_MEM"] or "?"))
w("- Load: `wrk -t%s -c%s -d%ss --latency` (wrk %s), after a discarded %s-second" % (E["THREADS"], E["CONNECTIONS"], E["BENCH_SECONDS"], E["BENCH_WRK"], E["WARMUP_SECONDS"]) + " warm-up run, against 127.0.0.1")
w("- Rounds: %s; each scenario runs against every implementation back to back, each measurement on a freshly started server, the order rotating each round; figures are the median of the rounds" % E["BENCH_ROUNDS"])
w("- Server: `bench-server` (bench/src/main.rs), release build, " + E["BENCH_RUSTC"] + ", tokio multi-thread runtime with 1 worker thread")
if E.get("BENCH_SERVERS"):
    w("- Store servers, on the same machine, over loopback TCP: " + E["BENCH_SERVERS"])
versions = "tower-sessions %s (memory store: tower-sessions-memory-store %s); tower-sessions-sqlx-store %s" % (
    locked("tower-sessions"), locked("tower-sessions-memory-store"), locked("tower-sessions-sqlx-store"))
if "redis" in stores:
    versions += "; tower-sessions-redis-store %s (fred %s)" % (locked("tower-sessions-redis-store"), locked("fred"))
versions += "; sqlx %s" % locked("sqlx")
if "redis" in stores:
    versions += "; redis %s" % locked("redis")
w("- Versions: tidysession at " + E["BENCH_COMMIT"] + "; " + versions + "; axum %s" % locked("axum"))
w("")
w("**Server and wrk share this machine** (wrk has one thread, the server one runtime worker; the")
w("SQLite driver adds its own threads, and the database servers run here too), so the figures")
w("are only for comparison within one run, not absolute capacity. Re-run with `bash bench/run.sh`")
w("(`BENCH_SECONDS=30 BENCH_ROUNDS=5` for longer runs, `BENCH_STORES=\"postgres redis\"` for some")
w("stores only); raw wrk output is kept in `bench/results/`.")
w("")
w("Setup, identical for both libraries: library defaults except cookies not `Secure` (plain http)")
w("and the cookie named `id` (the default of both).")
if "memory" in stores:
    w("tidysession's `MemoryStore` is created with a capacity the run cannot reach (its default bound,")
    w("100,000 live sessions, would be hit by the no-cookie write run); tower-sessions' is unbounded.")
if "sqlite" in stores:
    w("The SQLite stores are fresh database files")
    w("with the same connection settings: WAL, synchronous=NORMAL, 5 s busy timeout, at most 8")
    w("connections. tidysession's `SqliteStore` keeps its own connections; tower-sessions' store takes")
    w("an sqlx pool, given `test_before_acquire(false)` so that it skips the ping before each use as")
    w("tidysession does (sqlx's pool still pings each connection when it is returned; tidysession's")
    w("store does not, and that is part of what is measured).")
if net_stores:
    w("The server stores start empty on every server start, each in a namespace of its own (a")
    w("PostgreSQL schema, MariaDB tables, a Redis key prefix for tidysession and a Redis database for")
    w("tower-sessions, whose store has no key prefix), removed when the server stops.")
    w("tidysession's PostgreSQL and MySQL stores keep their own connections, as its SQLite store")
    w("does; tower-sessions-sqlx-store's pools get the same limits:")
    if "postgres" in stores:
        w("PostgreSQL at most 16 connections;")
    if "mysql" in stores:
        w("MariaDB at most 10 connections, idle ones closed after a minute;")
    w("both without a ping before each use (sqlx's pool still pings each connection when it is")
    w("returned; tidysession's stores do not, and that is part of what is measured).")
    if "redis" in stores:
        w("On Redis both libraries use one pipelined connection (tidysession's `RedisStore::connect`, a")
        w("single fred client for tower-sessions).")
w("For bare axum, /read and /write return a constant and no cookie is involved.")
w("")
axum_rps = [float(res[("axum", t)]["rps"]) for t, _ in scenarios]
w("Noise: bare axum runs an equally trivial handler in all four scenarios; in this run its medians")
w("ranged from %s to %s requests/s (max/min %.2f). The *spread* column is each row's fastest round" % (
    "{:,.0f}".format(min(axum_rps)), "{:,.0f}".format(max(axum_rps)), max(axum_rps) / min(axum_rps)))
w("divided by its slowest. *Server CPU* is the server process's CPU time (user and system, all")
w("threads) per request: it depends much less than requests/s on what else the machine is doing,")
w("so it is the steadier figure for comparing the libraries. It does not include the CPU time of")
w("the database servers.")

w("")
w("## tidysession ÷ tower-sessions")
w("")
w("Each figure is tidysession's median divided by tower-sessions' on the same store in the same")
w("scenario. *requests/s*: above 1 means tidysession served more; *p99* and *server CPU*: below 1")
w("means tidysession's tail latency was shorter or it spent less CPU per request.")
w("")
w("| store | scenario | requests/s | p99 latency | server CPU per request |")
w("|---|---|---:|---:|---:|")
for store in stores:
    for title, _ in scenarios:
        w("| %s | %s | %s | %s | %s |" % ((STORE_NAMES[store], title) + ratios(store, title)))

w("")
w("## Bytes sent to the store per one-key write of a 2 KB session")
w("")
if net_stores:
    w("A separate pass, not timed: each server starts with `--count-store-bytes`, which routes the")
    w("store's connections through a counting TCP proxy on 127.0.0.1. One `GET /pad` creates a")
    w("session with a ~2 KB value; after %s uncounted writes (the pooled connections prepare their" % E["BENCH_BYTES_WARMUP"])
    w("statements), %s sequential `GET /write` requests with its cookie each change one key (`n`)." % E["BENCH_BYTES_WRITES"])
    w("*Sent per write* is every byte the app sent to the store's server")
    w("during those requests (protocol framing, the statement or command, its arguments), divided")
    w("by the number of requests; each request also loads the session first, which is part of it.")
    w("*Received* is what came back (the load returns the whole session in both libraries).")
    w("*Sent by /pad* is the first write of the session, with the 2 KB value, for scale. Memory and")
    w("SQLite stores are in-process and have no traffic to count.")
    w("")
    w("| store | implementation | sent per write (bytes) | sent vs tower-sessions | received per write (bytes) | sent by /pad (bytes) |")
    w("|---|---|---:|---:|---:|---:|")
    for store in net_stores:
        other = byte_rows.get("tower-sessions-" + store)
        for lib in ("tidysession", "tower-sessions"):
            b = byte_rows.get(lib + "-" + store)
            if b is None:
                continue
            vs = ratio(int(b["sent_per_write"]), int(other["sent_per_write"])) if lib == "tidysession" and other else "—"
            w("| %s | %s-%s | %s | %s | %s | %s |" % (
                STORE_NAMES[store], lib, store, "{:,}".format(int(b["sent_per_write"])), vs,
                "{:,}".format(int(b["received_per_write"])), "{:,}".format(int(b["pad_sent"]))))
else:
    w("No store with a server (PostgreSQL, MariaDB/MySQL, Redis) was in this run.")

for title, desc in scenarios:
    w("")
    w("## " + title[0].upper() + title[1:])
    w("")
    w(desc)
    w("")
    w("| implementation | requests/s | p99 latency (ms) | vs bare axum | vs tower-sessions same store | p99 vs tower-sessions | spread | server CPU (µs/request) | CPU vs tower-sessions |")
    w("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    base = float(res[("axum", title)]["rps"])
    problems = []
    for imp in impls:
        r = res[(imp, title)]
        rps = float(r["rps"])
        vs_axum = ratio(rps, base)
        vs_tower = p99_vs = cpu_vs = "—"
        if imp.startswith("tidysession-"):
            vs_tower, p99_vs, cpu_vs = ratios(imp.split("-", 1)[1], title)
        w("| %s | %s | %s | %s | %s | %s | %.2f | %.1f | %s |" % (imp, "{:,.0f}".format(rps), "%.2f" % float(r["p99_ms"]), vs_axum, vs_tower, p99_vs, r["spread"], r["cpu_us"], cpu_vs))
        if int(r["non2xx"]) or int(r["socket_errors"]):
            problems.append("%s: %s non-2xx responses, %s socket errors (of %s requests in all rounds)" % (
                imp, r["non2xx"], r["socket_errors"], r["requests"]))
    w("")
    if problems:
        w("**Errors in this scenario:** " + "; ".join(problems) + ".")
    else:
        w("All responses were 2xx, with no socket errors.")

# Keep the scale benchmark's section (bench/scale.sh; written by hand from its output).
kept = ""
try:
    marker = "<!-- scale.sh -->"
    previous = open(doc).read()
    if marker in previous:
        kept = "\n" + previous[previous.index(marker):]
except FileNotFoundError:
    pass
open(doc, "w").write("\n".join(out) + "\n" + kept)
PY

log "wrote $DOC"
cat "$DOC"
