# Starts a disposable PostgreSQL cluster for the current script.
#
# `start_throwaway_postgres` runs one from the locally installed server
# binaries (initdb, pg_ctl) in a temporary directory, on a free loopback
# port, sets THROWAWAY_PG_URL to its superuser URL, and removes it when the
# script exits. PostgreSQL refuses to run as root, so under root the
# cluster runs as the `postgres` user. Durability is off: it lives for one
# run.

find_pg_bin() {
    local name=$1
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return
    fi
    ls -d /usr/lib/postgresql/*/bin/"$name" /usr/local/pgsql/bin/"$name" 2>/dev/null | sort -V | tail -n 1
}

start_throwaway_postgres() {
    INITDB=$(find_pg_bin initdb)
    PG_CTL=$(find_pg_bin pg_ctl)
    if [ -z "$INITDB" ] || [ -z "$PG_CTL" ]; then
        echo "error: PostgreSQL server binaries (initdb, pg_ctl) were not found." >&2
        echo "  Install them (Debian/Ubuntu: apt-get install postgresql)." >&2
        exit 1
    fi

    PGTMP=$(mktemp -d "${TMPDIR:-/tmp}/behavry-pg.XXXXXX")
    RUN=()
    if [ "$(id -u)" = 0 ]; then
        if ! id postgres >/dev/null 2>&1; then
            echo "error: running as root, but there is no 'postgres' user to run PostgreSQL as." >&2
            exit 1
        fi
        chown postgres "$PGTMP"
        RUN=(runuser -u postgres --)
    fi

    # A free loopback port: the first in a random walk that nothing answers on.
    PORT=""
    for _ in $(seq 1 50); do
        candidate=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$candidate") 2>/dev/null; then
            PORT=$candidate
            break
        fi
    done
    [ -n "$PORT" ] || { echo "error: no free port found for PostgreSQL" >&2; exit 1; }

    PGPASS=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')
    printf '%s\n' "$PGPASS" > "$PGTMP/pwfile"
    [ ${#RUN[@]} -eq 0 ] || chown postgres "$PGTMP/pwfile"

    cleanup() {
        "${RUN[@]}" "$PG_CTL" -D "$PGTMP/data" -m immediate stop >/dev/null 2>&1 || true
        rm -rf "$PGTMP"
    }
    trap cleanup EXIT

    "${RUN[@]}" "$INITDB" -D "$PGTMP/data" -U postgres --pwfile="$PGTMP/pwfile" \
        --auth-host=scram-sha-256 --auth-local=trust -E UTF8 --locale=C >"$PGTMP/initdb.log" 2>&1 \
        || { cat "$PGTMP/initdb.log" >&2; exit 1; }
    "${RUN[@]}" "$PG_CTL" -D "$PGTMP/data" -l "$PGTMP/server.log" -w -t 60 \
        -o "-p $PORT -k $PGTMP -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=400" \
        start >/dev/null \
        || { cat "$PGTMP/server.log" >&2; exit 1; }
    THROWAWAY_PG_URL="postgresql://postgres:$PGPASS@127.0.0.1:$PORT/postgres"
    echo "throwaway PostgreSQL: $("$PG_CTL" --version) on 127.0.0.1:$PORT"
}
