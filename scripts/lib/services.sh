# shellcheck shell=bash
#
# Throwaway test services for Persys: PostgreSQL, Redis, etcd 3.4 and a
# private Docker engine, each on 127.0.0.1 on a free port with its data inside
# one temporary root directory.  Sourced by scripts/test.
#
# Public entry points:
#   svc_ensure_packages   install missing Debian packages (root) or say what is missing
#   svc_start_all         create the root dir and start every selected service
#   svc_print_exports     print `export VAR=...` lines for the services that came up
#   svc_cleanup           stop every daemon started here and remove the root dir
#
# Knobs (environment):
#   PERSYS_TEST_SERVICES        comma list of services to start (default: postgres,redis,etcd,docker,kube,tools)
#   PERSYS_TEST_KUBE_TIMEOUT    seconds the API server and controller manager get to be ready (180)
#   PERSYS_TOOLS_DIR            cache of the Go tools (default ~/.cache/persys-tools)
#   PERSYS_TEST_NO_INSTALL=1    never run apt-get
#   PERSYS_TEST_KEEP_ROOT=1     keep the temporary root (logs, data) after cleanup
#   PERSYS_TEST_TMPDIR          where to create the root (default /tmp; keep it short:
#                               docker's unix socket paths live under it)
#   PERSYS_TEST_DOCKER_STORAGE_DRIVER  force a dockerd storage driver (default: dockerd's
#                               own choice, then vfs as a fallback)
#   PG_BINDIR                   PostgreSQL server binaries (default: newest /usr/lib/postgresql/*/bin)

SVC_ROOT=""
SVC_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SVC_NAMES=()        # service names, parallel to SVC_PIDS
SVC_PIDS=()         # pid of each daemon; each one leads its own session (setsid)
SVC_EXPORTS=()      # "NAME=value" lines for the services that are ready
SVC_STATUS=()       # human-readable status lines for the summary
SVC_CLEANED=0
SVC_DOCKER_CGROUP=""

SVC_PG_USER="persys"
SVC_PG_PASS="persys"
SVC_PG_DB="persys_test"
SVC_TEST_IMAGE="persys-test/busybox:latest"

svc_log()  { printf '[services] %s\n' "$*" >&2; }
svc_warn() { printf '[services] WARNING: %s\n' "$*" >&2; }
svc_is_root() { [ "$(id -u)" -eq 0 ]; }
svc_now() { date +%s.%N; }
svc_elapsed() { awk -v a="$1" -v b="$(svc_now)" 'BEGIN { printf "%.1fs", b - a }'; }

svc_wanted() {
    local list=",${PERSYS_TEST_SERVICES:-postgres,redis,etcd,docker,kube,tools},"
    [[ "$list" == *",$1,"* ]]
}

# ---------------------------------------------------------------------------
# Packages
# ---------------------------------------------------------------------------

svc_pkg_installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

svc_ensure_packages() {
    local want=()
    svc_wanted postgres && want+=(postgresql)
    svc_wanted redis && want+=(redis-server)
    svc_wanted etcd && want+=(etcd-server etcd-client)
    # docker-compose, debootstrap, iptables, binutils (objcopy): the compose check (tests/compose/run.sh).
    svc_wanted docker && want+=(docker.io busybox-static iproute2 docker-compose debootstrap iptables binutils)
    # protoc: etcd-client compiles etcd's own protos with it (Persys' contracts use protox).
    svc_wanted kube && want+=(openssl curl jq)
    # A real container registry (distribution) for the reconciler's Registry checks.
    svc_wanted tools && want+=(docker-registry)
    want+=(procps protobuf-compiler libprotobuf-dev)
    svc_install_debs "${want[@]}"
}

# svc_install_debs PKG...: install the Debian packages that are missing (as root), or say how.
svc_install_debs() {
    local want=("$@") missing=() p
    if ! command -v dpkg-query >/dev/null 2>&1; then
        svc_warn "not a Debian system (no dpkg-query): not checking packages ${want[*]}"
        return 0
    fi
    for p in "${want[@]}"; do
        svc_pkg_installed "$p" || missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0

    if [ "${PERSYS_TEST_NO_INSTALL:-}" = 1 ] || ! svc_is_root || ! command -v apt-get >/dev/null 2>&1; then
        svc_warn "missing Debian packages: ${missing[*]}"
        svc_warn "install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}"
        svc_warn "continuing; tests that need these services will skip (or fail under CI=true)"
        return 0
    fi

    local t0 made_policy=0
    t0=$(svc_now)
    svc_log "installing: ${missing[*]}"
    # Never let package scripts start the system-wide daemons (redis on 6379,
    # dockerd on /var/run/docker.sock, postgresql's main cluster).
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local aptlog
    aptlog=$(mktemp /tmp/persys-apt.XXXXXX.log)
    if ! apt-get update >"$aptlog" 2>&1; then
        svc_warn "apt-get update failed; trying to install from the existing package lists"
        svc_log_tail "$aptlog"
    fi
    if ! apt-get install -y --no-install-recommends "${missing[@]}" >"$aptlog" 2>&1; then
        svc_log_tail "$aptlog"
        svc_warn "installing all at once failed; trying one package at a time"
        for p in "${missing[@]}"; do
            if ! apt-get install -y --no-install-recommends "$p" >"$aptlog" 2>&1; then
                svc_warn "could not install $p"
                svc_log_tail "$aptlog"
            fi
        done
    fi
    rm -f "$aptlog"
    if [ "$made_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    svc_log "packages done in $(svc_elapsed "$t0")"
}

# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------

# svc_free_ports N: print N distinct free TCP ports on 127.0.0.1.
svc_free_ports() {
    local n=$1
    if command -v python3 >/dev/null 2>&1; then
        python3 - "$n" <<'PY' && return 0
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
    fi
    # Fallback: random ports below the usual ephemeral range that nobody answers on.
    local out=() p tries=0
    while [ "${#out[@]}" -lt "$n" ] && [ "$tries" -lt 1000 ]; do
        tries=$((tries + 1))
        p=$((20000 + RANDOM % 12000))
        [[ " ${out[*]} " == *" $p "* ]] && continue
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            out+=("$p")
        fi
    done
    echo "${out[*]}"
}

svc_alive() {
    local pid=$1 state
    [ -r "/proc/$pid/stat" ] || return 1
    state=$(sed -e 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# svc_spawn NAME LOGFILE CMD...: start CMD in the background in its own session.
svc_spawn() {
    local name=$1 log=$2
    shift 2
    setsid "$@" >"$log" 2>&1 </dev/null &
    SVC_NAMES+=("$name")
    SVC_PIDS+=("$!")
    SVC_LAST_PID=$!
}

# svc_wait_ready NAME PID TIMEOUT CMD...: poll CMD until it succeeds, the daemon dies, or TIMEOUT s.
svc_wait_ready() {
    local name=$1 pid=$2 timeout=$3
    shift 3
    local deadline=$((SECONDS + timeout))
    while :; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if ! svc_alive "$pid"; then
            svc_warn "$name exited during start-up"
            return 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            svc_warn "$name not ready after ${timeout}s"
            return 1
        fi
        sleep 0.2
    done
}

svc_log_tail() {
    local log=$1
    [ -f "$log" ] || return 0
    printf '[services] ---- last lines of %s ----\n' "$log" >&2
    tail -n 25 "$log" | sed 's/^/[services]   /' >&2
    printf '[services] ----\n' >&2
}

# svc_stop_pid NAME PID SIGNAL TIMEOUT: signal, wait, then SIGKILL its whole session.
svc_stop_pid() {
    local name=$1 pid=$2 sig=$3 timeout=$4 kids
    svc_alive "$pid" || return 0
    # Postgres backends and containerd call setsid() themselves: remember the
    # whole process tree now, to SIGKILL whatever of it outlives the daemon.
    kids=$(svc_descendants "$pid")
    kill "-$sig" "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + timeout))
    while svc_alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do
        sleep 0.1
    done
    if svc_alive "$pid"; then
        svc_warn "$name (pid $pid) still running after ${timeout}s: SIGKILL"
        kill -KILL -- "-$pid" 2>/dev/null || true
        kill -KILL "$pid" 2>/dev/null || true
    fi
    # Anything left in the daemon's session or process tree.
    svc_kill_session "$pid"
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$kids" ] || kill -KILL $kids 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# svc_descendants PID: print all descendants of PID (children first by level).
svc_descendants() {
    ps -eo pid=,ppid= 2>/dev/null | awk -v root="$1" '
        { parent[$1] = $2; pids[NR] = $1 }
        END {
            want[root] = 1
            changed = 1
            while (changed) {
                changed = 0
                for (i in pids) {
                    p = pids[i]
                    if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 }
                }
            }
            for (p in want) if (p != root) print p
        }' || true
}

svc_kill_session() {
    local sid=$1 pids
    pids=$(ps -eo pid=,sid= 2>/dev/null | awk -v s="$sid" '$2 == s { print $1 }') || true
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    return 0
}

svc_add_export() {
    export "$1=$2"
    SVC_EXPORTS+=("$1=$2")
}

# ---------------------------------------------------------------------------
# PostgreSQL
# ---------------------------------------------------------------------------

svc_pg_bindir() {
    if [ -n "${PG_BINDIR:-}" ]; then
        echo "$PG_BINDIR"
        return 0
    fi
    local d
    # Debian keeps server binaries out of PATH; /usr/local/bin may hold symlinks
    # to one of these, so prefer the newest real Debian directory.
    # shellcheck disable=SC2012 # version-sorted directory names
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/postgres" ]; then
            echo "$d"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1; then
        d=$(dirname "$(readlink -f "$(command -v initdb)")")
        [ -x "$d/postgres" ] && { echo "$d"; return 0; }
    fi
    return 1
}

svc_start_postgres() {
    local bindir port dir data sock log run_as=() pid
    if ! bindir=$(svc_pg_bindir); then
        svc_warn "postgres: no PostgreSQL server binaries found (apt-get install postgresql)"
        return 1
    fi
    port=$(svc_free_ports 1)
    dir="$SVC_ROOT/postgres"
    data="$dir/data"
    sock="$dir/sock"
    log="$SVC_ROOT/logs/postgres.log"
    mkdir -p "$dir" "$sock"
    if svc_is_root; then
        if ! id postgres >/dev/null 2>&1; then
            svc_warn "postgres: running as root but there is no 'postgres' user to run the server as"
            return 1
        fi
        chown -R postgres: "$dir"
        run_as=(setpriv --reuid=postgres --regid=postgres --init-groups --)
    fi
    if ! "${run_as[@]}" "$bindir/initdb" -D "$data" -U postgres --auth=trust --no-locale \
        -E UTF8 --no-sync >"$SVC_ROOT/logs/initdb.log" 2>&1; then
        svc_warn "postgres: initdb failed"
        svc_log_tail "$SVC_ROOT/logs/initdb.log"
        return 1
    fi
    # Loopback only: the server listens on 127.0.0.1 and a private socket dir.
    cat >"$data/pg_hba.conf" <<EOF
local   all   all                 trust
host    all   all   127.0.0.1/32  trust
EOF
    cat >>"$data/postgresql.conf" <<EOF

# --- persys test settings ---
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sock'
max_connections = 300
shared_buffers = 128MB
fsync = off
synchronous_commit = off
full_page_writes = off
logging_collector = off
EOF
    [ "${#run_as[@]}" -gt 0 ] && chown postgres: "$data/pg_hba.conf" "$data/postgresql.conf"

    svc_spawn postgres "$log" "${run_as[@]}" "$bindir/postgres" -D "$data"
    pid=$SVC_LAST_PID
    local isready="$bindir/pg_isready" psql="$bindir/psql"
    [ -x "$isready" ] || isready=pg_isready
    [ -x "$psql" ] || psql=psql
    if ! svc_wait_ready postgres "$pid" 60 "$isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 1; then
        svc_log_tail "$log"
        return 1
    fi
    if ! "$psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
        -c "ALTER ROLE postgres PASSWORD 'postgres'" \
        -c "CREATE ROLE $SVC_PG_USER LOGIN SUPERUSER CREATEDB PASSWORD '$SVC_PG_PASS'" \
        -c "CREATE DATABASE $SVC_PG_DB OWNER $SVC_PG_USER" >>"$log" 2>&1; then
        svc_warn "postgres: creating the test role/database failed"
        svc_log_tail "$log"
        return 1
    fi
    svc_add_export PERSYS_TEST_DATABASE_URL "postgres://$SVC_PG_USER:$SVC_PG_PASS@127.0.0.1:$port/$SVC_PG_DB"
    svc_add_export PERSYS_TEST_PG_ADMIN_URL "postgres://$SVC_PG_USER:$SVC_PG_PASS@127.0.0.1:$port/postgres"
    SVC_STATUS+=("postgres: ready on 127.0.0.1:$port ($("$bindir/postgres" --version 2>/dev/null))")
}

# ---------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------

svc_start_redis() {
    local port dir log pid
    if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
        svc_warn "redis: redis-server/redis-cli not found (apt-get install redis-server)"
        return 1
    fi
    port=$(svc_free_ports 1)
    dir="$SVC_ROOT/redis"
    log="$SVC_ROOT/logs/redis.log"
    mkdir -p "$dir"
    svc_spawn redis "$log" redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" \
        --save '' --appendonly no --daemonize no --logfile ''
    pid=$SVC_LAST_PID
    if ! svc_wait_ready redis "$pid" 30 svc_redis_ping "$port"; then
        svc_log_tail "$log"
        return 1
    fi
    svc_add_export PERSYS_TEST_REDIS_URL "redis://127.0.0.1:$port"
    SVC_STATUS+=("redis: ready on 127.0.0.1:$port ($(redis-server --version | awk '{print $3}'))")
}

svc_redis_ping() {
    [ "$(redis-cli -h 127.0.0.1 -p "$1" ping 2>/dev/null)" = PONG ]
}

# ---------------------------------------------------------------------------
# etcd 3.4
# ---------------------------------------------------------------------------

svc_start_etcd() {
    local cport pport dir log pid
    if ! command -v etcd >/dev/null 2>&1; then
        svc_warn "etcd: etcd not found (apt-get install etcd-server)"
        return 1
    fi
    if ! command -v etcdctl >/dev/null 2>&1; then
        svc_warn "etcd: etcdctl not found (apt-get install etcd-client)"
        return 1
    fi
    read -r cport pport <<<"$(svc_free_ports 2)"
    dir="$SVC_ROOT/etcd"
    log="$SVC_ROOT/logs/etcd.log"
    mkdir -p "$dir"
    chmod 700 "$dir"
    svc_spawn etcd "$log" etcd --name default --data-dir "$dir" \
        --listen-client-urls "http://127.0.0.1:$cport" \
        --advertise-client-urls "http://127.0.0.1:$cport" \
        --listen-peer-urls "http://127.0.0.1:$pport" \
        --initial-advertise-peer-urls "http://127.0.0.1:$pport" \
        --initial-cluster "default=http://127.0.0.1:$pport" \
        --initial-cluster-state new --initial-cluster-token persys-test
    pid=$SVC_LAST_PID
    if ! svc_wait_ready etcd "$pid" 60 env ETCDCTL_API=3 etcdctl \
        --endpoints "http://127.0.0.1:$cport" --dial-timeout 1s --command-timeout 2s endpoint health; then
        svc_log_tail "$log"
        return 1
    fi
    svc_add_export PERSYS_TEST_ETCD_ENDPOINTS "http://127.0.0.1:$cport"
    SVC_STATUS+=("etcd: ready on 127.0.0.1:$cport (peer $pport; $(etcd --version 2>/dev/null | head -n1))")
}

# ---------------------------------------------------------------------------
# Docker engine (private dockerd, no bridge/iptables) + a local busybox image
# ---------------------------------------------------------------------------

svc_docker() { docker -H "unix://$SVC_ROOT/docker.sock" "$@"; }

svc_start_docker() {
    if ! svc_is_root; then
        svc_warn "docker: dockerd needs root; not starting a Docker engine"
        return 1
    fi
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
        svc_warn "docker: dockerd/docker not found (apt-get install docker.io)"
        return 1
    fi
    local drivers=() drv
    if [ -n "${PERSYS_TEST_DOCKER_STORAGE_DRIVER:-}" ]; then
        drivers=("$PERSYS_TEST_DOCKER_STORAGE_DRIVER")
    else
        drivers=(default vfs)
    fi
    for drv in "${drivers[@]}"; do
        if svc_try_docker "$drv"; then
            return 0
        fi
    done
    return 1
}

# One attempt at dockerd with storage driver $1 ("default" = dockerd's choice).
svc_try_docker() {
    local drv=$1 log pid args=()
    log="$SVC_ROOT/logs/dockerd-$drv.log"
    rm -rf "$SVC_ROOT/docker" "$SVC_ROOT/docker-exec"
    mkdir -p "$SVC_ROOT/docker" "$SVC_ROOT/docker-exec"
    SVC_DOCKER_CGROUP="/$(basename "$SVC_ROOT")"
    args=(--bridge=none --iptables=false --ip6tables=false --ip-masq=false
        --data-root "$SVC_ROOT/docker" --exec-root "$SVC_ROOT/docker-exec"
        --pidfile "$SVC_ROOT/docker.pid" -H "unix://$SVC_ROOT/docker.sock"
        --cgroup-parent "$SVC_DOCKER_CGROUP")
    [ "$drv" != default ] && args+=(--storage-driver "$drv")
    svc_spawn dockerd "$log" dockerd "${args[@]}"
    pid=$SVC_LAST_PID
    if svc_wait_ready dockerd "$pid" 60 svc_docker version; then
        if svc_docker_image "$log"; then
            local used
            used=$(svc_docker info --format '{{.Driver}}' 2>/dev/null || echo "$drv")
            svc_add_export DOCKER_HOST "unix://$SVC_ROOT/docker.sock"
            svc_add_export PERSYS_TEST_IMAGE "$SVC_TEST_IMAGE"
            SVC_STATUS+=("docker: ready at unix://$SVC_ROOT/docker.sock (dockerd $(svc_docker version --format '{{.Server.Version}}' 2>/dev/null), storage driver $used)")
            return 0
        fi
    fi
    svc_warn "docker: attempt with storage driver '$drv' failed"
    svc_log_tail "$log"
    svc_stop_docker
    return 1
}

# Build persys-test/busybox:latest from the static busybox, with no registry.
svc_docker_image() {
    svc_import_busybox "unix://$SVC_ROOT/docker.sock" "$SVC_TEST_IMAGE" "$SVC_ROOT/docker-image" "$1"
}

# svc_import_busybox DOCKER_HOST IMAGE WORKDIR LOG: makes IMAGE from the static busybox with
# `docker import` (no registry) on the engine at DOCKER_HOST, and checks that it runs. Also used
# by tests/compose/run.sh for its own engine.
svc_import_busybox() {
    local host=$1 image=$2 img=$3 log=$4 bb a out
    bb=$(command -v busybox 2>/dev/null || true)
    [ -x /bin/busybox ] && bb=/bin/busybox
    if [ -z "$bb" ]; then
        svc_warn "docker: no busybox binary (apt-get install busybox-static)"
        return 1
    fi
    rm -rf "$img"
    mkdir -p "$img"/{bin,etc,tmp,root,proc,sys,dev}
    chmod 1777 "$img/tmp"
    cp "$bb" "$img/bin/busybox"
    for a in $("$img/bin/busybox" --list 2>/dev/null) sh sleep echo cat ls true false env; do
        [ -e "$img/bin/$a" ] || [ -L "$img/bin/$a" ] || ln -s busybox "$img/bin/$a"
    done
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$img/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$img/etc/group"
    if ! tar --numeric-owner --owner=0 --group=0 -C "$img" -cf - . |
        timeout 120 docker -H "$host" import -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
            -c 'CMD ["/bin/sh"]' - "$image" >>"$log" 2>&1; then
        svc_warn "docker: docker import of $image failed"
        return 1
    fi
    rm -rf "$img"
    out=$(timeout 120 docker -H "$host" run --rm --network none "$image" echo hi 2>>"$log") || true
    if [ "$out" != hi ]; then
        svc_warn "docker: 'docker run --rm --network none $image echo hi' printed '$out', not 'hi'"
        return 1
    fi
}

svc_stop_docker() {
    local i pid
    [ -n "$SVC_ROOT" ] || return 0
    for i in "${!SVC_NAMES[@]}"; do
        [ "${SVC_NAMES[$i]}" = dockerd ] || continue
        pid=${SVC_PIDS[$i]}
        svc_alive "$pid" || continue
        # Kill containers first: dockerd would otherwise give each one 10 s to stop.
        local ids
        ids=$(timeout 20 docker -H "unix://$SVC_ROOT/docker.sock" ps -aq 2>/dev/null) || true
        # shellcheck disable=SC2086 # a list of container ids
        [ -z "$ids" ] || timeout 30 docker -H "unix://$SVC_ROOT/docker.sock" rm -f $ids >/dev/null 2>&1 || true
        svc_stop_pid dockerd "$pid" TERM 30
    done
    # containerd shims leave the daemon's session; find them by their socket path.
    local stray
    stray=$(pgrep -f "$SVC_ROOT/docker-exec/" 2>/dev/null) || true
    # shellcheck disable=SC2086 # a list of pids
    [ -z "$stray" ] || kill -KILL $stray 2>/dev/null || true
    svc_kill_cgroup
    svc_unmount_root
}

# Kill any process left in this run's container cgroups, then remove those cgroups.
svc_kill_cgroup() {
    [ -n "$SVC_DOCKER_CGROUP" ] || return 0
    local d pids
    for d in /sys/fs/cgroup/*"$SVC_DOCKER_CGROUP" /sys/fs/cgroup"$SVC_DOCKER_CGROUP"; do
        [ -d "$d" ] || continue
        pids=$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null) || true
        # shellcheck disable=SC2086 # a list of pids
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    done
    sleep 0.1
    for d in /sys/fs/cgroup/*"$SVC_DOCKER_CGROUP" /sys/fs/cgroup"$SVC_DOCKER_CGROUP"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    return 0
}

svc_unmount_root() {
    [ -n "$SVC_ROOT" ] || return 0
    local m
    # shellcheck disable=SC2013 # mount points here contain no blanks
    for m in $(awk -v r="$SVC_ROOT/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || svc_warn "could not unmount $m"
    done
}

# ---------------------------------------------------------------------------
# Kubernetes control plane: kube-apiserver on the etcd above (its own key prefix) and
# kube-controller-manager, built from the Go module proxy by scripts/tools/build. No kubelet:
# nodes are API objects that tests create where they need them.
# ---------------------------------------------------------------------------

svc_tools_build() {
    "$SVC_LIB_DIR/../tools/build" "$@"
}

# svc_kube_cert DIR NAME CN ORG [SAN]: a key and a certificate signed by the test cluster's CA
# (a server certificate when SAN is given, a client certificate otherwise).
svc_kube_cert() {
    local pki=$1 name=$2 cn=$3 org=$4 san=${5:-} subj
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [ -n "$san" ]; then
            echo "extendedKeyUsage=serverAuth"
            echo "subjectAltName=$san"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$pki/$name.ext"
    subj="/CN=$cn"
    [ -n "$org" ] && subj="/O=$org$subj"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null &&
        openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
            -CAcreateserial -days 2 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
}

# svc_kubeconfig FILE SERVER CA CERT KEY USER
svc_kubeconfig() {
    printf '%s\n' \
        "apiVersion: v1" \
        "kind: Config" \
        "clusters:" \
        "- name: persys-test" \
        "  cluster:" \
        "    server: $2" \
        "    certificate-authority: $3" \
        "users:" \
        "- name: $6" \
        "  user:" \
        "    client-certificate: $4" \
        "    client-key: $5" \
        "contexts:" \
        "- name: persys-test" \
        "  context:" \
        "    cluster: persys-test" \
        "    user: $6" \
        "    namespace: default" \
        "current-context: persys-test" >"$1"
    chmod 600 "$1"
}

svc_kube_ready() {
    local url=$1 pki=$2 out
    out=$(curl -fsS --max-time 3 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
        "$url/readyz" 2>/dev/null) && [ "$out" = ok ]
}

svc_start_kube() {
    local bins apiserver cm kubectl dir pki log pid port cmport url t0 t
    if [ -z "${PERSYS_TEST_ETCD_ENDPOINTS:-}" ]; then
        svc_warn "kube: needs the test etcd, which is not running"
        return 1
    fi
    for t in openssl curl; do
        command -v "$t" >/dev/null 2>&1 || { svc_warn "kube: $t not found"; return 1; }
    done
    t0=$(svc_now)
    if ! bins=$(svc_tools_build kube-apiserver kube-controller-manager kubectl); then
        svc_warn "kube: building the control plane failed (scripts/tools/build, see above)"
        return 1
    fi
    { read -r apiserver; read -r cm; read -r kubectl; } <<<"$bins"
    svc_log "kube: binaries ready in $(svc_elapsed "$t0")"
    dir="$SVC_ROOT/kube"
    pki="$dir/pki"
    mkdir -p "$pki"
    chmod 700 "$dir"
    read -r port cmport <<<"$(svc_free_ports 2)"
    url="https://127.0.0.1:$port"

    # A throwaway CA, the API server's serving certificate, an admin (system:masters), the
    # controller manager's identity and the service-account signing key.
    if ! { openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=persys-test-kube-ca" -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null &&
        svc_kube_cert "$pki" apiserver kube-apiserver "" \
            "IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:10.0.0.1" &&
        svc_kube_cert "$pki" admin persys-test-admin system:masters &&
        svc_kube_cert "$pki" controller-manager system:kube-controller-manager "" &&
        openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null &&
        openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null; }; then
        svc_warn "kube: making the test cluster's certificates with openssl failed"
        return 1
    fi
    svc_kubeconfig "$dir/admin.kubeconfig" "$url" "$pki/ca.crt" "$pki/admin.crt" "$pki/admin.key" persys-test-admin
    svc_kubeconfig "$dir/controller-manager.kubeconfig" "$url" "$pki/ca.crt" \
        "$pki/controller-manager.crt" "$pki/controller-manager.key" system:kube-controller-manager

    log="$SVC_ROOT/logs/kube-apiserver.log"
    # The service range is API bookkeeping only: no proxy or kubelet ever routes to it.
    # No etcd compaction by the API server: compaction is global in etcd, and the scheduler's
    # tests on the same etcd resume watches from older revisions.
    # Admission webhooks may call back to loopback (their `url` is used as given).
    svc_spawn kube-apiserver "$log" "$apiserver" \
        --etcd-servers="$PERSYS_TEST_ETCD_ENDPOINTS" --etcd-prefix=/persys-test-kube \
        --etcd-compaction-interval=0 \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
        --endpoint-reconciler-type=none \
        --cert-dir="$dir/cert" --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
        --authorization-mode=RBAC --anonymous-auth=false \
        --service-cluster-ip-range=10.0.0.0/24 --allow-privileged=true --profiling=false \
        --event-ttl=10m --v=1
    pid=$SVC_LAST_PID
    if ! svc_wait_ready kube-apiserver "$pid" "${PERSYS_TEST_KUBE_TIMEOUT:-180}" svc_kube_ready "$url" "$pki"; then
        svc_log_tail "$log"
        return 1
    fi

    log="$SVC_ROOT/logs/kube-controller-manager.log"
    svc_spawn kube-controller-manager "$log" "$cm" \
        --kubeconfig="$dir/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port="$cmport" --cert-dir="$dir/cm-cert" \
        --leader-elect=false --use-service-account-credentials=true \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
        --profiling=false --v=1
    pid=$SVC_LAST_PID
    if ! svc_wait_ready kube-controller-manager "$pid" "${PERSYS_TEST_KUBE_TIMEOUT:-180}" \
        curl -fsSk --max-time 3 "https://127.0.0.1:$cmport/healthz"; then
        svc_log_tail "$log"
        return 1
    fi
    svc_add_export PERSYS_TEST_KUBECONFIG "$dir/admin.kubeconfig"
    svc_add_export PERSYS_TEST_KUBECTL "$kubectl"
    SVC_STATUS+=("kube: kube-apiserver ready on $url, kube-controller-manager on 127.0.0.1:$cmport ($("$apiserver" --version 2>/dev/null))")
}

# Programs the tests drive themselves, built once per machine: helm, grpcurl, Prometheus with
# promtool (a test backfills a known series and starts its own server on it), and Alertmanager
# (the metrics pipeline's notification test starts its own and posts alerts to it).
svc_start_tools() {
    local bins helm grpcurl prometheus promtool alertmanager
    if ! bins=$(svc_tools_build helm grpcurl prometheus promtool alertmanager); then
        svc_warn "tools: building helm/grpcurl/prometheus/alertmanager failed (scripts/tools/build, see above)"
        return 1
    fi
    { read -r helm; read -r grpcurl; read -r prometheus; read -r promtool; read -r alertmanager; } <<<"$bins"
    svc_add_export PERSYS_TEST_ALERTMANAGER "$alertmanager"
    svc_add_export PERSYS_TEST_HELM "$helm"
    svc_add_export PERSYS_TEST_GRPCURL "$grpcurl"
    svc_add_export PERSYS_TEST_PROMETHEUS "$prometheus"
    svc_add_export PERSYS_TEST_PROMTOOL "$promtool"
    if command -v docker-registry >/dev/null 2>&1; then
        svc_add_export PERSYS_TEST_DOCKER_REGISTRY "$(command -v docker-registry)"
    else
        svc_warn "tools: docker-registry (Debian package docker-registry) is missing; the Registry tests fail under CI=true"
    fi
    SVC_STATUS+=("tools: helm $("$helm" version --short 2>/dev/null), grpcurl $("$grpcurl" -version 2>&1 | awk '{print $2}'), prometheus $("$SVC_LIB_DIR/../tools/build" --list | awk '$1 == "prometheus" {print $2}'), alertmanager $("$SVC_LIB_DIR/../tools/build" --list | awk '$1 == "alertmanager" {print $2}')")
}

# ---------------------------------------------------------------------------
# Orchestration
# ---------------------------------------------------------------------------

svc_start_all() {
    local base="${PERSYS_TEST_TMPDIR:-/tmp}" t0 s st
    SVC_ROOT=$(mktemp -d "$base/persys-test.XXXXXX")
    chmod 755 "$SVC_ROOT"   # the postgres user must be able to reach its data dir
    mkdir -p "$SVC_ROOT/logs"
    svc_log "root: $SVC_ROOT"
    for s in postgres redis etcd docker kube tools; do
        svc_wanted "$s" || continue
        t0=$(svc_now)
        if "svc_start_$s"; then
            svc_log "$s ready in $(svc_elapsed "$t0")"
        else
            st="$s: NOT AVAILABLE (see the warnings above; PERSYS_TEST_KEEP_ROOT=1 keeps the logs)"
            SVC_STATUS+=("$st")
            svc_warn "$st"
        fi
    done
    # For developers: `source $SVC_ROOT/env.sh`
    svc_print_exports >"$SVC_ROOT/env.sh"
}

svc_print_exports() {
    local kv
    for kv in "${SVC_EXPORTS[@]}"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
}

svc_print_status() {
    local s
    for s in "${SVC_STATUS[@]}"; do
        svc_log "  $s"
    done
}

svc_cleanup() {
    [ "$SVC_CLEANED" = 1 ] && return 0
    SVC_CLEANED=1
    [ -n "$SVC_ROOT" ] || return 0
    local i name pid sig
    svc_log "stopping services"
    svc_stop_docker
    # In reverse order of start: the controller manager before the API server, the API server
    # before the etcd it drains its requests to.
    for ((i = ${#SVC_NAMES[@]} - 1; i >= 0; i--)); do
        name=${SVC_NAMES[$i]}
        pid=${SVC_PIDS[$i]}
        [ "$name" = dockerd ] && continue
        sig=TERM
        # postgres: SIGTERM is "smart" shutdown (waits for clients); SIGINT is "fast".
        [ "$name" = postgres ] && sig=INT
        svc_stop_pid "$name" "$pid" "$sig" 20
    done
    # Belt and braces: anything still in one of our daemons' sessions.
    for pid in "${SVC_PIDS[@]}"; do
        svc_kill_session "$pid"
    done
    svc_unmount_root
    if [ "${PERSYS_TEST_KEEP_ROOT:-}" = 1 ]; then
        svc_log "keeping $SVC_ROOT (PERSYS_TEST_KEEP_ROOT=1)"
    else
        rm -rf "$SVC_ROOT" 2>/dev/null || svc_warn "could not remove $SVC_ROOT completely"
    fi
    svc_log "services stopped"
}
