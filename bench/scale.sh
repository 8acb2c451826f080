#!/usr/bin/env bash
# Scale benchmark: `tidysession clear` and the library's Reaper against the single unbounded
# DELETE (what Django's `clearsessions` issues) on big session tables, while a probe reads,
# inserts and updates sessions in the same table.
#
#   bash bench/scale.sh                          # 10 million rows, all four combinations
#   SCALE_ROWS=200000 bash bench/scale.sh        # a quick validation run
#   SCALE_COMBOS="postgres:native mysql:django" bash bench/scale.sh
#
# Environment:
#   SCALE_ROWS              rows per table, 90% expired (default 10000000)
#   SCALE_COMBOS            of postgres:native postgres:django mysql:native mysql:django (default all)
#   SCALE_METHODS           of clear reaper delete (default all three)
#   SCALE_BASELINE_SECONDS  probe window before each method starts (default 20)
#   SCALE_PROBE_RATE        probe operations per second, read/insert/update in turn (default 20)
#   SCALE_STATEMENT_TIMEOUT bound on every statement the script issues, seconds (default 1800)
#   SCALE_CLEAR_ARGS        extra arguments for `tidysession clear` (e.g. "--batch 500")
#   SCALE_REAPER_ARGS       extra arguments for bench/scale-reaper (e.g. "--batch-size 500
#                           --batch-ms 10"; its defaults are the Reaper's)
#   SCALE_POSTGRES_URL      default postgres://root@127.0.0.1/test
#   SCALE_MYSQL_URL         default mysql://root@127.0.0.1/test (MariaDB or MySQL)
#   SCALE_MYSQL_SETTINGS    InnoDB settings for the MariaDB/MySQL runs, `name=value` separated
#                           by spaces, set with SET GLOBAL (in this order) before the first
#                           such run and put back (in reverse) when the script exits; empty
#                           leaves the server's own. Default: a 2 GiB buffer pool, a 1 GiB redo
#                           log, the I/O capacity of an SSD, and background flushing from 10%
#                           dirty pages (see docs/benchmarks.md, "Scale", for why each):
#                           innodb_buffer_pool_size=2147483648 innodb_log_file_size=1073741824
#                           innodb_io_capacity_max=4000 innodb_io_capacity=2000
#                           innodb_max_dirty_pages_pct_lwm=10
#   TIDYSESSION             the CLI binary (default $CARGO_TARGET_DIR or target/, release/tidysession;
#                           build it with `cargo build --release -p tidysession-cli --all-features`)
#
# For each combination, in a schema/table created for the run and dropped afterwards
# (PostgreSQL: schema tidysession_scale for the native table, table tidysession_scale_django
# for Django's; MariaDB: tables tidysession_scale (+ _schema) and tidysession_scale_django):
#   1. creates the table with `tidysession migrate`, fills it with set-based SQL (secondary
#      indexes and the primary key are dropped for the fill and rebuilt after it, as a bulk
#      load would), ANALYZE, and lets the server write the load back (PostgreSQL: CHECKPOINT;
#      InnoDB: until at most 1% of the buffer pool is dirty);
#   2. starts bench/scale-probe (built here, release) and lets it run SCALE_BASELINE_SECONDS;
#   3. runs `tidysession clear --store URL`, timed, the probe still running; stops the probe;
#   4. empties and refills the table, and does the same for the Reaper (bench/scale-reaper,
#      built here, release: `Reaper::run_once` back to back, no interval, until a run leaves
#      nothing) and for the single DELETE;
#   5. prints the table (also kept in bench/results/scale-*/table.md, raw probe samples beside it).
# Probe percentiles cover every completed operation (errors and timeouts included, with the
# time they took to fail); failed, timed-out and skipped operations (the probe skips a tick
# when 64 operations are already in flight) are counted separately.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
RESULTS="$BENCH_DIR/results"
PROBE_DIR="$BENCH_DIR/scale-probe"
PROBE="$PROBE_DIR/target/release/scale-probe"
REAPER_DIR="$BENCH_DIR/scale-reaper"
REAPER="$REAPER_DIR/target/release/scale-reaper"
TIDYSESSION="${TIDYSESSION:-${CARGO_TARGET_DIR:-$ROOT/target}/release/tidysession}"

SCALE_ROWS="${SCALE_ROWS:-10000000}"
read -r -a COMBOS <<<"${SCALE_COMBOS:-postgres:native postgres:django mysql:native mysql:django}"
read -r -a METHODS <<<"${SCALE_METHODS:-clear reaper delete}"
BASELINE="${SCALE_BASELINE_SECONDS:-20}"
RATE="${SCALE_PROBE_RATE:-20}"
STMT_TIMEOUT="${SCALE_STATEMENT_TIMEOUT:-1800}"
read -r -a CLEAR_ARGS <<<"${SCALE_CLEAR_ARGS:-}"
read -r -a REAPER_ARGS <<<"${SCALE_REAPER_ARGS:-}"
PG_URL="${SCALE_POSTGRES_URL:-postgres://root@127.0.0.1/test}"
MY_URL="${SCALE_MYSQL_URL:-mysql://root@127.0.0.1/test}"
read -r -a MY_SETTINGS <<<"${SCALE_MYSQL_SETTINGS-innodb_buffer_pool_size=2147483648 innodb_log_file_size=1073741824 innodb_io_capacity_max=4000 innodb_io_capacity=2000 innodb_max_dirty_pages_pct_lwm=10}"
for v in SCALE_ROWS BASELINE RATE STMT_TIMEOUT; do
    if ! [[ "${!v}" =~ ^[1-9][0-9]*$ ]]; then
        echo "$v must be a positive integer (got '${!v}')" >&2
        exit 2
    fi
done

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
now_ms() { date +%s%3N; }

[[ -x "$TIDYSESSION" ]] || { echo "no CLI binary at $TIDYSESSION (see the header)" >&2; exit 2; }
# Each in its own target/ (a CARGO_TARGET_DIR in the environment would move the binaries).
log "building scale-probe"
(cd "$PROBE_DIR" && timeout 1200 cargo build --release --quiet --target-dir "$PROBE_DIR/target")
if [[ " ${METHODS[*]} " == *" reaper "* ]]; then
    log "building scale-reaper"
    (cd "$REAPER_DIR" && timeout 1800 cargo build --release --quiet --target-dir "$REAPER_DIR/target")
fi

mkdir -p "$RESULTS"
STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
RAW="$RESULTS/scale-$STAMP"
mkdir -p "$RAW"
TSV="$RAW/results.tsv"
printf 'db\tschema\tmethod\trows\tdeleted\tseconds\tlongest_ms\tlongest_src\tbefore_file\tbefore_from\tbefore_to\tduring_from\tduring_to\n' >"$TSV"

# --- database access ----------------------------------------------------------------------
# MySQL URL parts for the `mysql` client (user, host, port, database; no password support
# beyond MYSQL_PWD in the environment).
my_rest="${MY_URL#mysql://}"
MY_USER="${my_rest%%@*}"; MY_USER="${MY_USER%%:*}"
my_hostdb="${my_rest#*@}"
MY_HOSTPORT="${my_hostdb%%/*}"
MY_DB="${my_hostdb#*/}"; MY_DB="${MY_DB%%\?*}"
MY_HOST="${MY_HOSTPORT%%:*}"
MY_PORT=3306
if [[ "$MY_HOSTPORT" == *:* ]]; then MY_PORT="${MY_HOSTPORT##*:}"; fi

pg() { PGOPTIONS="-c statement_timeout=${STMT_TIMEOUT}s -c client_min_messages=warning" \
    psql "$PG_URL" -X -q -At -v ON_ERROR_STOP=1 "$@"; }
my() { mysql -h "$MY_HOST" -P "$MY_PORT" -u "$MY_USER" -N -B "$MY_DB" \
    --init-command="SET SESSION max_statement_time=$STMT_TIMEOUT" "$@"; }

# InnoDB settings for the MariaDB/MySQL runs: set once, before the first; put back at exit.
MY_BEFORE=()
SETTLE_PCT=""
set_innodb() {
    [[ ${#MY_SETTINGS[@]} -eq 0 || ${#MY_BEFORE[@]} -gt 0 ]] && return 0
    local kv name value
    for kv in "${MY_SETTINGS[@]}"; do
        name=${kv%%=*}; value=${kv#*=}
        [[ "$name" =~ ^innodb_[a-z_]+$ && "$value" =~ ^[0-9.]+$ ]] \
            || { echo "SCALE_MYSQL_SETTINGS: '$kv' is not innodb_name=number" >&2; exit 2; }
        MY_BEFORE=("$name=$(my -e "SELECT @@$name")" "${MY_BEFORE[@]}")
        my -e "SET GLOBAL $name = $value"
        log "$name: ${MY_BEFORE[0]#*=} -> $(my -e "SELECT @@$name") for the run"
    done
}
restore_innodb() {
    local kv
    for kv in "${MY_BEFORE[@]}"; do
        my -e "SET GLOBAL ${kv%%=*} = ${kv#*=}" && log "${kv%%=*} put back to ${kv#*=}"
    done
    MY_BEFORE=()
}

PROBE_PID=""
cleanup_all() {
    if [[ -n "$PROBE_PID" ]]; then kill -TERM "$PROBE_PID" 2>/dev/null || true; wait "$PROBE_PID" 2>/dev/null || true; fi
    for c in "${COMBOS[@]}"; do drop_tables "${c%%:*}" "${c##*:}" 2>/dev/null || true; done
    if [[ -n "$SETTLE_PCT" ]]; then my -e "SET GLOBAL innodb_max_dirty_pages_pct = $SETTLE_PCT" || true; fi
    restore_innodb || true
}
trap cleanup_all EXIT
trap 'exit 130' INT TERM

# Per combination: store URL, qualified table for the probe and SQL.
setup_names() {
    local db=$1 schema=$2
    case "$db:$schema" in
        postgres:native) STORE="$PG_URL?schema=tidysession_scale"; REL='"tidysession_scale"."tidysession_sessions"' ;;
        postgres:django) STORE="django+$PG_URL?table=tidysession_scale_django"; REL='"tidysession_scale_django"' ;;
        mysql:native) STORE="$MY_URL?table=tidysession_scale"; REL='`tidysession_scale`' ;;
        mysql:django) STORE="django+$MY_URL?table=tidysession_scale_django"; REL='`tidysession_scale_django`' ;;
        *) echo "unknown combination $db:$schema" >&2; exit 2 ;;
    esac
    PROBE_URL="$PG_URL"
    if [[ $db == mysql ]]; then PROBE_URL="$MY_URL"; fi
}

drop_tables() {
    local db=$1 schema=$2
    case "$db:$schema" in
        postgres:native) pg -c 'DROP SCHEMA IF EXISTS tidysession_scale CASCADE' ;;
        postgres:django) pg -c 'DROP TABLE IF EXISTS tidysession_scale_django' ;;
        mysql:native) my -e 'DROP TABLE IF EXISTS tidysession_scale, tidysession_scale_schema' ;;
        mysql:django) my -e 'DROP TABLE IF EXISTS tidysession_scale_django' ;;
    esac
}

# Rows 1..N; row i is live when i % 10 = 0 (expires 1 h to 14 days ahead), else expired
# (1 s to 30 days ago). Native: id = sha256(decimal i) (32 bytes), a JSON object of about
# 350 bytes, a user id on every third row. Django: key = first 32 hex digits of that hash,
# session_data of about 300 characters shaped like Django's signed payload.
pg_fill_sql() {
    local schema=$1 n=$2
    local rel="$REL"
    local insert
    if [[ $schema == native ]]; then
        insert="INSERT INTO $rel (id, data, created_at, expires_at, user_id, version)
          SELECT sha256(i::text::bytea),
            jsonb_strip_nulls(jsonb_build_object('_auth_user_id', u, 'csrf', md5(i::text),
              'cart', jsonb_build_array(i % 97, i % 13), 'pad', repeat(md5(i::text || 'p'), 8))),
            e - 14 * 86400000, e, u, 0
          FROM (SELECT i, CASE WHEN i % 3 = 0 THEN (i % 100000)::text END AS u,
                  CASE WHEN i % 10 = 0
                    THEN n + 3600000 + (random() * 13 * 86400000)::bigint
                    ELSE n - 1000 - (random() * 30 * 86400000)::bigint END AS e
                FROM generate_series(1, $n) AS i,
                     (SELECT (extract(epoch FROM now()) * 1000)::bigint AS n) AS t) AS s"
    else
        insert="INSERT INTO $rel (session_key, session_data, expire_date)
          SELECT left(encode(sha256(i::text::bytea), 'hex'), 32),
            '.eJx' || repeat(md5(i::text || 'p'), 8) || ':1t' || left(md5(i::text), 5) || ':'
              || left(md5(i::text || 's'), 27),
            CASE WHEN i % 10 = 0
              THEN now() + interval '1 hour' + random() * interval '13 days'
              ELSE now() - interval '1 second' - random() * interval '30 days' END
          FROM generate_series(1, $n) AS i"
    fi
    # Drop the indexes and the primary key, load, rebuild them with their own definitions.
    cat <<SQL
SET maintenance_work_mem = '512MB';
DO \$\$
DECLARE r record; defs text[] := '{}'; d text; pk_name text; pk_def text;
BEGIN
  FOR r IN SELECT indexrelid::regclass::text AS name, pg_get_indexdef(indexrelid) AS def
           FROM pg_index WHERE indrelid = '$rel'::regclass AND NOT indisprimary LOOP
    defs := defs || r.def;
    EXECUTE 'DROP INDEX ' || r.name;
  END LOOP;
  SELECT conname, pg_get_constraintdef(oid) INTO pk_name, pk_def
    FROM pg_constraint WHERE conrelid = '$rel'::regclass AND contype = 'p';
  EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', '$rel', pk_name);
  $insert;
  EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', '$rel', pk_name, pk_def);
  FOREACH d IN ARRAY defs LOOP EXECUTE d; END LOOP;
END \$\$;
ANALYZE $rel;
CHECKPOINT;
SQL
}

my_fill() {
    local schema=$1 n=$2 table
    table="${REL//\`/}"
    # The secondary indexes, to drop for the load and rebuild after it.
    local idx drops="" adds=""
    idx=$(my -e "SELECT index_name, GROUP_CONCAT(CONCAT('\`', column_name, '\`') ORDER BY seq_in_index)
                 FROM information_schema.statistics
                 WHERE table_schema = DATABASE() AND table_name = '$table' AND index_name <> 'PRIMARY'
                 GROUP BY index_name")
    while IFS=$'\t' read -r name cols; do
        [[ -z "$name" ]] && continue
        drops+="${drops:+, }DROP INDEX \`$name\`"
        adds+="${adds:+, }ADD INDEX \`$name\` ($cols)"
    done <<<"$idx"
    local insert
    if [[ $schema == native ]]; then
        insert="INSERT INTO $REL (id, data, created_at, expires_at, user_id, version)
          SELECT id, data, e - 14 * 86400000, e, u, 0 FROM (
            SELECT UNHEX(SHA2(seq, 256)) AS id,
              IF(seq % 3 = 0,
                 JSON_OBJECT('_auth_user_id', u, 'csrf', MD5(seq), 'cart', JSON_ARRAY(seq % 97, seq % 13), 'pad', REPEAT(MD5(CONCAT(seq, 'p')), 8)),
                 JSON_OBJECT('csrf', MD5(seq), 'cart', JSON_ARRAY(seq % 97, seq % 13), 'pad', REPEAT(MD5(CONCAT(seq, 'p')), 8))) AS data,
              u,
              IF(seq % 10 = 0, n + 3600000 + FLOOR(RAND() * 13 * 86400000),
                               n - 1000 - FLOOR(RAND() * 30 * 86400000)) AS e
            FROM (SELECT seq, IF(seq % 3 = 0, CAST(seq % 100000 AS CHAR), NULL) AS u FROM seq_1_to_$n) AS q,
                 (SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED) AS n) AS t) AS s
          ORDER BY id"
    else
        insert="INSERT INTO $REL (session_key, session_data, expire_date)
          SELECT k, d, x FROM (
            SELECT LEFT(SHA2(seq, 256), 32) AS k,
              CONCAT('.eJx', REPEAT(MD5(CONCAT(seq, 'p')), 8), ':1t', LEFT(MD5(seq), 5), ':', LEFT(MD5(CONCAT(seq, 's')), 27)) AS d,
              IF(seq % 10 = 0,
                 UTC_TIMESTAMP(6) + INTERVAL (3600 + FLOOR(RAND() * 13 * 86400)) SECOND,
                 UTC_TIMESTAMP(6) - INTERVAL (1 + FLOOR(RAND() * 30 * 86400)) SECOND) AS x
            FROM seq_1_to_$n) AS s
          ORDER BY k"
    fi
    if [[ -n "$drops" ]]; then my -e "ALTER TABLE $REL $drops"; fi
    my -e "SET SESSION unique_checks = 0; $insert"
    if [[ -n "$adds" ]]; then my -e "ALTER TABLE $REL $adds"; fi
    my -e "ANALYZE TABLE $REL" >/dev/null
    my_settle
}

# Like the CHECKPOINT that ends a PostgreSQL fill: InnoDB writes the load's dirty pages back
# before the baseline starts (innodb_max_dirty_pages_pct at 0 for the while), so the probe's
# "before" is a quiet server and not one still flushing gigabytes. At most 5 minutes.
my_settle() {
    local dirty total i
    SETTLE_PCT=$(my -e 'SELECT @@innodb_max_dirty_pages_pct')
    my -e 'SET GLOBAL innodb_max_dirty_pages_pct = 0'
    for ((i = 0; i < 300; i++)); do
        dirty=$(my -e "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_dirty'" | cut -f2)
        total=$(my -e "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_pages_total'" | cut -f2)
        (( dirty * 100 <= total )) && break
        sleep 1
    done
    my -e "SET GLOBAL innodb_max_dirty_pages_pct = $SETTLE_PCT"
    SETTLE_PCT=""
    log "dirty pages written back: $dirty of $total left after ${i} s"
}

fill() {
    local db=$1 schema=$2
    local t0; t0=$(now_ms)
    drop_tables "$db" "$schema"
    # Creating a Django table goes through the store, which wants a secret; `clear` does not.
    DJANGO_SECRET_KEY=scale-bench timeout 120 "$TIDYSESSION" migrate --store "$STORE" >/dev/null
    if [[ $db == postgres ]]; then
        pg_fill_sql "$schema" "$SCALE_ROWS" | pg -f -
    else
        my_fill "$schema" "$SCALE_ROWS"
    fi
    local count
    if [[ $db == postgres ]]; then
        count=$(pg -c "SELECT count(*) FROM $REL")
    else
        count=$(my -e "SELECT count(*) FROM $REL")
    fi
    log "$db $schema: $count rows in $(( ($(now_ms) - t0) / 1000 )) s"
}

single_delete_sql() {
    local db=$1 schema=$2
    case "$db:$schema" in
        postgres:native) echo "DELETE FROM $REL WHERE expires_at < (extract(epoch FROM now()) * 1000)::bigint" ;;
        postgres:django) echo "DELETE FROM $REL WHERE expire_date < now()" ;;
        mysql:native) echo "DELETE FROM $REL WHERE expires_at < CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)" ;;
        mysql:django) echo "DELETE FROM $REL WHERE expire_date < UTC_TIMESTAMP(6)" ;;
    esac
}

run_one() {
    local db=$1 schema=$2 method=$3
    local tag="$db-$schema-$method"
    fill "$db" "$schema"
    local samples="$RAW/$tag.probe.csv"
    "$PROBE" --db "$db" --kind "$schema" --url "$PROBE_URL" --table "$REL" --rows "$SCALE_ROWS" \
        --rate "$RATE" --max-seconds $((STMT_TIMEOUT + BASELINE + 120)) >"$samples" 2>"$RAW/$tag.probe.err" &
    PROBE_PID=$!
    local probe_start; probe_start=$(now_ms)
    sleep "$BASELINE"
    local start end deleted longest src
    log "$tag: running"
    start=$(now_ms)
    if [[ $method == clear ]]; then
        timeout "$STMT_TIMEOUT" "$TIDYSESSION" clear --store "$STORE" "${CLEAR_ARGS[@]}" \
            >"$RAW/$tag.out" 2>"$RAW/$tag.progress"
        end=$(now_ms)
        # "deleted N expired sessions in Xs (R sessions/s, longest batch L ms); …"
        deleted=$(sed -n 's/^deleted \([0-9]*\) expired.*/\1/p' "$RAW/$tag.out")
        longest=$(sed -n 's/.*longest batch \([0-9.]*\) ms.*/\1/p' "$RAW/$tag.out")
        src="clear's longest batch"
    elif [[ $method == reaper ]]; then
        timeout "$STMT_TIMEOUT" "$REAPER" --store "$STORE" "${REAPER_ARGS[@]}" \
            >"$RAW/$tag.out" 2>"$RAW/$tag.progress"
        end=$(now_ms)
        # The same summary line as clear's.
        deleted=$(sed -n 's/^deleted \([0-9]*\) expired.*/\1/p' "$RAW/$tag.out")
        longest=$(sed -n 's/.*longest batch \([0-9.]*\) ms.*/\1/p' "$RAW/$tag.out")
        src="the Reaper's longest batch"
    else
        local sql; sql=$(single_delete_sql "$db" "$schema")
        if [[ $db == postgres ]]; then
            # Without -q psql prints the command tag, "DELETE n".
            deleted=$(PGOPTIONS="-c statement_timeout=${STMT_TIMEOUT}s" psql "$PG_URL" -X -At \
                -v ON_ERROR_STOP=1 -c "$sql" | sed -n 's/^DELETE //p')
        else
            deleted=$(my -e "$sql; SELECT ROW_COUNT()")
        fi
        end=$(now_ms)
        longest=$(( end - start ))
        src="the statement (one transaction)"
    fi
    # A short tail so that the probe's last samples of the run are complete.
    sleep 2
    kill -TERM "$PROBE_PID"; wait "$PROBE_PID" || true; PROBE_PID=""
    if [[ $method != delete ]]; then log "$tag: $(cat "$RAW/$tag.out")"; fi
    log "$tag: deleted $deleted in $(( end - start )) ms, longest transaction $longest ms"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$db" "$schema" "$method" "$SCALE_ROWS" \
        "$deleted" "$(awk "BEGIN{printf \"%.3f\", ($end - $start) / 1000}")" "$longest" "$src" \
        "$samples" "$((probe_start + 2000))" "$start" "$start" "$end" >>"$TSV"
}

T0=$(now_ms)
for c in "${COMBOS[@]}"; do
    db="${c%%:*}"; schema="${c##*:}"
    setup_names "$db" "$schema"
    if [[ $db == mysql ]]; then set_innodb; fi
    for m in "${METHODS[@]}"; do
        run_one "$db" "$schema" "$m"
    done
    drop_tables "$db" "$schema"
    log "$c done after $(( ($(now_ms) - T0) / 1000 )) s in all"
done

python3 - "$TSV" "$RAW/table.md" <<'PY'
import csv, sys

def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100 * len(xs) + 0.5)) - 1))
    return xs[k]

def window(path, lo, hi):
    lat, bad = [], 0
    for line in open(path):
        parts = line.strip().split(",")
        if len(parts) != 4:
            continue
        t, op, us, ok = int(parts[0]), parts[1], int(parts[2]), parts[3]
        if lo <= t < hi:
            if ok == "skipped":
                bad += 1
                continue
            lat.append(us / 1000)
            if ok != "ok":
                bad += 1
    return lat, bad

def fmt(v):
    return "—" if v is None else ("%.1f" % v if v < 100 else "{:,.0f}".format(v))

names = {"postgres": "PostgreSQL", "mysql": "MariaDB", "native": "native", "django": "Django",
         "clear": "tidysession clear", "reaper": "tidysession Reaper", "delete": "single DELETE"}
out = ["| database | schema | method | rows deleted | duration (s) | rows/s | longest transaction (ms) | probe p50 / p99 / max before (ms) | probe p50 / p99 / max during (ms) | probe ops during (failed or skipped) |",
       "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
    b, bbad = window(r["before_file"], int(r["before_from"]), int(r["before_to"]))
    d, dbad = window(r["before_file"], int(r["during_from"]), int(r["during_to"]))
    secs = float(r["seconds"])
    deleted = int(r["deleted"] or 0)
    out.append("| %s | %s | %s | %s | %.1f | %s | %s | %s / %s / %s | %s / %s / %s | %d (%d) |" % (
        names[r["db"]], names[r["schema"]], names[r["method"]], "{:,}".format(deleted), secs,
        "{:,.0f}".format(deleted / secs) if secs else "—", fmt(float(r["longest_ms"])),
        fmt(pct(b, 50)), fmt(pct(b, 99)), fmt(max(b) if b else None),
        fmt(pct(d, 50)), fmt(pct(d, 99)), fmt(max(d) if d else None), len(d), dbad))
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
PY
log "raw data in $RAW; total $(( ($(now_ms) - T0) / 1000 )) s"
