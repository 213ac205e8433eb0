#!/usr/bin/env bash
# tests/compose/run.sh: deploy/compose/docker-compose.yml started for real, with no container
# registry and no network outside this machine. Called by scripts/test (as root) after the
# debug binaries are built; see docs/deploy.md ("Testing the compose file").
#
# 1. A Debian bookworm base image: `debootstrap --variant=minbase` from the machine's Debian
#    mirror with the packages the stand-ins need, cached as a tarball under
#    ${PERSYS_TOOLS_DIR:-$HOME/.cache/persys-tools}/debian-base/ (keyed by a hash of the package
#    list), then `docker import`ed.
# 2. A private dockerd in a network namespace made here (its own data, exec root and socket under
#    a temporary root): every container, bridge and published port lives inside that namespace;
#    the test's clients (the persys CLI, curl) run there with `ip netns exec`.
# 3. Local stand-ins for the compose file's third-party images (tests/compose/standins/:
#    postgres, etcd), the Persys image from deploy/compose/Dockerfile.prebuilt and the binaries
#    already in the build output (target/debug), and persys-test/busybox:latest (static busybox) for a workload.
# 4. `docker-compose up -d`, health, `persys login`, a join token, the `agent` profile, the node
#    Ready, its host metrics stored by the `metrics` service, a workload Running with its output in `persys workload logs`, `workload rm`,
#    `docker-compose down -v`.
#
# Needs root and the Debian packages debootstrap, docker.io, docker-compose, iptables,
# iproute2, busybox-static, curl (and binutils, optional: objcopy strips the debug info).
#
# Environment:
#   PERSYS_BIN_DIR          Persys binaries (default: $CARGO_TARGET_DIR/debug, else target/debug)
#   PERSYS_TOOLS_DIR        cache of the base tarball (default: $HOME/.cache/persys-tools)
#   PERSYS_DEBIAN_MIRROR    Debian mirror for debootstrap (default: the one apt uses)
#   PERSYS_TEST_TMPDIR      where the temporary root goes (default /tmp; keep the path short,
#                           unix socket paths live under it)
#   PERSYS_COMPOSE_KEEP=1   keep the temporary root (logs) after the run
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HERE/../.." && pwd)
# svc_import_busybox (the workload image) and svc_warn.
# shellcheck source=../../scripts/lib/services.sh
. "$REPO_ROOT/scripts/lib/services.sh"
COMPOSE_DIR="$REPO_ROOT/deploy/compose"
BIN_DIR="${PERSYS_BIN_DIR:-${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug}"
TOOLS_DIR="${PERSYS_TOOLS_DIR:-${HOME:-/root}/.cache/persys-tools}"

SUITE=bookworm
# What the stand-ins and the Persys image need on top of minbase (bash, passwd, util-linux's
# setpriv are in minbase already). Changing this list (or BASE_FORMAT, for a change in how the
# tree is trimmed) makes a new cache key.
BASE_PACKAGES=(ca-certificates etcd-client etcd-server postgresql)
BASE_FORMAT=1
BINARIES=(gateway persys scheduler agent analyzer metrics-pipeline reconciler dorgu persys-stack)

IMG_PREFIX=persys-compose-test
PERSYS_IMAGE_TAG="$IMG_PREFIX/persys:dev"
POSTGRES_IMAGE_TAG="$IMG_PREFIX/postgres:16-standin"
ETCD_IMAGE_TAG="$IMG_PREFIX/etcd:standin"
WORKLOAD_IMAGE=persys-test/busybox:latest
PROJECT=persys
NODE_NAME=compose-node

NS="persys-compose-$$"
ROOT=""
SOCK=""
DOCKERD_PID=""
NS_CREATED=0
COMPOSE_UP=0
CGROUP_PARENT="/persys-compose-$$"
STEP=""
STEP_T0=""
STEP_LOG=""
ADMIN_USER="admin"
ADMIN_PASS=""
RELAY_PIDS=()
# Every profile the test starts, so ps, logs and down cover all its containers.
PROFILES=(--profile agent --profile kubernetes)

log() { printf '[compose-test] %s\n' "$*" >&2; }
now() { svc_now; }
since() { svc_elapsed "$1"; }
T_START=$(now)

# step NAME: ends the current step (ok) and starts the next one.
step() {
    [ -z "$STEP" ] || log "    ok: $STEP ($(since "$STEP_T0"))"
    STEP=$1
    STEP_T0=$(now)
    STEP_LOG=""
    log "==> $STEP"
}
step_end() {
    [ -z "$STEP" ] || log "    ok: $STEP ($(since "$STEP_T0"))"
    STEP=""
}
fail() {
    log "ERROR: $*"
    exit 1
}
tail_log() {
    local f=$1 n=${2:-50}
    [ -s "$f" ] || return 0
    log "---- last $n lines of $f ----"
    tail -n "$n" "$f" | sed 's/^/    /' >&2
    log "----"
}

# The private engine, the compose project on it, and clients inside the namespace. Every call
# is bounded.
dk() { timeout --kill-after=10 "${DK_TIMEOUT:-120}" docker -H "unix://$SOCK" "$@"; }
DC_ENV=()
dc() {
    timeout --kill-after=10 "${DC_TIMEOUT:-300}" env -i PATH="$PATH" HOME="$ROOT/home" \
        DOCKER_HOST="unix://$SOCK" COMPOSE_HTTP_TIMEOUT=120 "${DC_ENV[@]}" \
        docker-compose --env-file "$ROOT/compose.env" -p "$PROJECT" \
        -f "$COMPOSE_DIR/docker-compose.yml" "$@"
}
in_ns() { ip netns exec "$NS" "$@"; }
cli() {
    timeout --kill-after=5 "${CLI_TIMEOUT:-60}" ip netns exec "$NS" env \
        PERSYS_CONFIG_DIR="$ROOT/cli" PERSYS_SERVER=http://127.0.0.1:8080 \
        "$BIN_DIR/persys" "$@"
}

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$1/status" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# Failure report and cleanup
# ---------------------------------------------------------------------------------------------

diagnostics() {
    [ -z "$STEP_LOG" ] || tail_log "$STEP_LOG" 40
    if [ -n "$SOCK" ] && [ -S "$SOCK" ] && alive "$DOCKERD_PID"; then
        if [ "$COMPOSE_UP" = 1 ]; then
            log "---- docker-compose ps ----"
            DC_TIMEOUT=60 dc "${PROFILES[@]}" ps 2>&1 | sed 's/^/    /' >&2 || true
            log "---- docker-compose logs --tail 50 ----"
            DC_TIMEOUT=60 dc "${PROFILES[@]}" logs --no-color --tail 50 2>&1 | sed 's/^/    /' >&2 || true
        fi
        log "---- containers of the private engine ----"
        DK_TIMEOUT=20 dk ps -a 2>&1 | sed 's/^/    /' >&2 || true
    fi
    [ -z "$ROOT" ] || tail_log "$ROOT/logs/dockerd.log" 50
}

stop_dockerd() {
    local ids pids d deadline
    if alive "$DOCKERD_PID"; then
        if [ "$COMPOSE_UP" = 1 ]; then
            log "cleanup: docker-compose down -v"
            DC_TIMEOUT=120 dc "${PROFILES[@]}" down -v --timeout 5 >"$ROOT/logs/cleanup-down.log" 2>&1 ||
                log "cleanup: docker-compose down failed (continuing)"
            COMPOSE_UP=0
        fi
        # Containers first: dockerd would otherwise give each one 10 s to stop.
        ids=$(DK_TIMEOUT=20 dk ps -aq 2>/dev/null) || true
        # shellcheck disable=SC2086 # a list of ids
        [ -z "$ids" ] || DK_TIMEOUT=60 dk rm -f $ids >/dev/null 2>&1 || true
        kill -TERM "$DOCKERD_PID" 2>/dev/null || true
        deadline=$((SECONDS + 30))
        while alive "$DOCKERD_PID" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
        alive "$DOCKERD_PID" && kill -KILL "$DOCKERD_PID" 2>/dev/null
    fi
    # containerd, its shims and docker-proxy all live in the namespace; containers in the cgroup.
    if [ "$NS_CREATED" = 1 ]; then
        pids=$(ip netns pids "$NS" 2>/dev/null) || true
        # shellcheck disable=SC2086 # a list of pids
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    fi
    for d in /sys/fs/cgroup/*"$CGROUP_PARENT" /sys/fs/cgroup"$CGROUP_PARENT"; do
        [ -d "$d" ] || continue
        pids=$(find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null) || true
        # shellcheck disable=SC2086 # a list of pids
        [ -z "$pids" ] || kill -KILL $pids 2>/dev/null || true
    done
    [ -z "$DOCKERD_PID" ] || wait "$DOCKERD_PID" 2>/dev/null || true
    sleep 0.2
    for d in /sys/fs/cgroup/*"$CGROUP_PARENT" /sys/fs/cgroup"$CGROUP_PARENT"; do
        [ -d "$d" ] || continue
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
}

unmount_root() {
    local m
    [ -n "$ROOT" ] || return 0
    # shellcheck disable=SC2013 # mount points here contain no blanks
    for m in $(awk -v r="$ROOT/" 'index($2, r) == 1 { print $2 }' /proc/self/mounts | sort -r); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "cleanup: could not unmount $m"
    done
}

on_exit() {
    local rc=$?
    trap '' INT TERM
    set +e
    if [ "$rc" -ne 0 ]; then
        log "FAILED in step: ${STEP:-(none)} (exit code $rc, after $(since "$T_START"))"
        diagnostics
    fi
    local p
    for p in "${RELAY_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    if [ -n "$ROOT" ]; then
        stop_dockerd
        unmount_root
        # Unix sockets of the shims, named after our containerd's socket path.
        [ "$NS_CREATED" = 1 ] && ip netns del "$NS" 2>/dev/null
        if [ "${PERSYS_COMPOSE_KEEP:-}" = 1 ]; then
            log "keeping $ROOT (PERSYS_COMPOSE_KEEP=1)"
        else
            rm -rf "$ROOT" 2>/dev/null || log "cleanup: could not remove $ROOT completely"
        fi
    fi
    if [ "$rc" -eq 0 ]; then
        log "PASSED: docker-compose stack up, agent joined, workload ran and was removed (total $(since "$T_START"))"
    else
        log "FAILED (total $(since "$T_START"))"
    fi
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------

preflight() {
    local c missing=() b
    [ "$(id -u)" -eq 0 ] || fail "needs root (a private dockerd in a network namespace)"
    for c in debootstrap dockerd docker docker-compose ip iptables nsenter unshare timeout tar sha256sum curl; do
        command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
    [ -x /bin/busybox ] || command -v busybox >/dev/null 2>&1 || missing+=(busybox)
    [ "${#missing[@]}" -eq 0 ] ||
        fail "missing commands: ${missing[*]} (apt-get install -y --no-install-recommends debootstrap docker.io docker-compose iptables iproute2 busybox-static curl)"
    for b in "${BINARIES[@]}"; do
        [ -x "$BIN_DIR/$b" ] || fail "no $BIN_DIR/$b: build the binaries first (cargo build --workspace --bins)"
    done
    [ -f "$COMPOSE_DIR/docker-compose.yml" ] || fail "no $COMPOSE_DIR/docker-compose.yml"
    ROOT=$(mktemp -d "${PERSYS_TEST_TMPDIR:-/tmp}/persys-compose.XXXXXX")
    chmod 755 "$ROOT"
    SOCK="$ROOT/docker.sock"
    mkdir -p "$ROOT/logs" "$ROOT/home" "$ROOT/cli"
    chmod 700 "$ROOT/cli"
    log "root: $ROOT; binaries: $BIN_DIR; cache: $TOOLS_DIR"
    log "$(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'); $(dockerd --version 2>/dev/null)"
}

# The Debian mirror apt uses for $SUITE (deb822 .sources first, then one-line .list files).
debian_mirror() {
    local f uri
    if [ -n "${PERSYS_DEBIAN_MIRROR:-}" ]; then
        echo "$PERSYS_DEBIAN_MIRROR"
        return 0
    fi
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk -v suite="$SUITE" 'BEGIN { RS = ""; FS = "\n" }
            {
                types = ""; uris = ""; suites = ""; enabled = "yes"
                for (i = 1; i <= NF; i++) {
                    line = $i
                    if (line ~ /^[ \t]*#/ || index(line, ":") == 0) continue
                    k = tolower(substr(line, 1, index(line, ":") - 1))
                    v = substr(line, index(line, ":") + 1)
                    gsub(/^[ \t]+|[ \t]+$/, "", v)
                    if (k == "types") types = v
                    else if (k == "uris") uris = v
                    else if (k == "suites") suites = v
                    else if (k == "enabled") enabled = tolower(v)
                }
                if ((" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ") && enabled != "no") {
                    split(uris, u, /[ \t]+/); print u[1]; exit
                }
            }' "$f")
        if [ -n "$uri" ]; then
            echo "$uri"
            return 0
        fi
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk -v suite="$SUITE" '$1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if ($(i + 1) == suite) { print $i; exit }
            }' "$f")
        if [ -n "$uri" ]; then
            echo "$uri"
            return 0
        fi
    done
    echo http://deb.debian.org/debian
}

BASE_TAR=""
BASE_IMAGE=""
base_tarball() {
    local key mirror target tmp arch
    arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
    key=$(printf '%s\n' "format=$BASE_FORMAT" "suite=$SUITE" "variant=minbase" "arch=$arch" \
        "${BASE_PACKAGES[@]}" | sha256sum | cut -c1-16)
    BASE_TAR="$TOOLS_DIR/debian-base/$SUITE-minbase-$key.tar"
    BASE_IMAGE="$IMG_PREFIX/debian:$SUITE-$key"
    if [ -s "$BASE_TAR" ]; then
        log "cached: $BASE_TAR"
        return 0
    fi
    mirror=$(debian_mirror)
    target="$ROOT/rootfs"
    STEP_LOG="$ROOT/logs/debootstrap.log"
    log "debootstrap --variant=minbase $SUITE from $mirror with ${BASE_PACKAGES[*]} (log: $STEP_LOG)"
    timeout --kill-after=30 1500 debootstrap --variant=minbase \
        --include="$(IFS=,; echo "${BASE_PACKAGES[*]}")" "$SUITE" "$target" "$mirror" >"$STEP_LOG" 2>&1 ||
        fail "debootstrap failed"
    # Trim: package caches and lists, docs, translations; the `main` cluster that the
    # postgresql package made (the stand-in makes its own in PGDATA); logs.
    rm -rf "$target"/var/cache/apt/archives/*.deb "$target"/var/cache/apt/*.bin \
        "$target"/var/lib/apt/lists/* "$target"/usr/share/doc/* "$target"/usr/share/man/* \
        "$target"/usr/share/info/* "$target"/usr/share/locale/* \
        "$target"/var/lib/postgresql/[0-9]* "$target"/etc/postgresql/[0-9]*
    find "$target/var/log" -type f -delete
    unmount_root
    mkdir -p "$(dirname "$BASE_TAR")"
    tmp="$BASE_TAR.tmp.$$"
    tar --numeric-owner --one-file-system -C "$target" \
        --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' --exclude='./run/*' \
        -cf "$tmp" . || { rm -f "$tmp"; fail "tar of the bootstrapped tree failed"; }
    mv -f "$tmp" "$BASE_TAR"
    rm -rf "$target"
    log "cached $(du -h "$BASE_TAR" | cut -f1) at $BASE_TAR"
}

start_dockerd() {
    local deadline
    ip netns add "$NS"
    NS_CREATED=1
    ip -n "$NS" link set lo up
    mkdir -p "$ROOT/docker" "$ROOT/exec" "$ROOT/cgroup-hold"
    STEP_LOG="$ROOT/logs/dockerd.log"
    # dockerd joins the namespace with nsenter (not `ip netns exec`, whose fresh /sys has no
    # cgroup mounts) in a mount namespace of its own: a sysfs of the new network namespace
    # (/sys/class/net shows its interfaces) with the host's cgroup hierarchy bound back under it.
    # Mounts made there (overlays, container namespaces) never show up on the host.
    # shellcheck disable=SC2016 # the inner script expands its own arguments
    setsid nsenter --net="/run/netns/$NS" unshare --mount --propagation slave -- bash -euc '
        hold=$1; shift
        mount --rbind /sys/fs/cgroup "$hold"
        mount -t sysfs -o nosuid,nodev,noexec sysfs /sys
        mount --rbind "$hold" /sys/fs/cgroup
        umount -l "$hold"
        exec "$@"' _ "$ROOT/cgroup-hold" \
        dockerd --data-root "$ROOT/docker" --exec-root "$ROOT/exec" -H "unix://$SOCK" \
        --pidfile "$ROOT/docker.pid" --cgroup-parent "$CGROUP_PARENT" \
        >"$STEP_LOG" 2>&1 </dev/null &
    DOCKERD_PID=$!
    deadline=$((SECONDS + 60))
    until DK_TIMEOUT=5 dk version >/dev/null 2>&1; do
        alive "$DOCKERD_PID" || fail "dockerd exited during start-up"
        [ "$SECONDS" -lt "$deadline" ] || fail "dockerd not answering after 60s"
        sleep 0.2
    done
    log "dockerd $(dk version --format '{{.Server.Version}}') in netns $NS, storage driver $(dk info --format '{{.Driver}}'), pid $DOCKERD_PID"
}

import_base() {
    STEP_LOG="$ROOT/logs/import.log"
    DK_TIMEOUT=600 dk import \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["bash"]' "$BASE_TAR" "$BASE_IMAGE" >"$STEP_LOG" 2>&1 || fail "docker import of the base failed"
    local out
    out=$(dk run --rm --network none "$BASE_IMAGE" bash -c 'echo base-ok') || true
    [ "$out" = base-ok ] || fail "the imported base does not run: '$out'"
}

build() {
    local name=$1
    shift
    STEP_LOG="$ROOT/logs/build-$name.log"
    DOCKER_BUILDKIT=0 DK_TIMEOUT=600 dk build --network none --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        "$@" >"$STEP_LOG" 2>&1 || fail "docker build of $name failed"
}

build_standins() {
    build postgres -t "$POSTGRES_IMAGE_TAG" "$HERE/standins/postgres"
    build etcd -t "$ETCD_IMAGE_TAG" "$HERE/standins/etcd"
}

build_persys() {
    local ctx="$ROOT/persys-context" b
    mkdir -p "$ctx"
    # Debug info makes up most of a debug binary; the image does not need it.
    for b in "${BINARIES[@]}"; do
        if command -v objcopy >/dev/null 2>&1; then
            objcopy --strip-debug "$BIN_DIR/$b" "$ctx/$b" 2>/dev/null || cp "$BIN_DIR/$b" "$ctx/$b"
        else
            cp "$BIN_DIR/$b" "$ctx/$b"
        fi
        chmod 0755 "$ctx/$b"
    done
    build persys -f "$COMPOSE_DIR/Dockerfile.prebuilt" -t "$PERSYS_IMAGE_TAG" "$ctx"
    rm -rf "$ctx"
    local out
    out=$(dk run --rm --network none "$PERSYS_IMAGE_TAG" sh -c 'id -u; id -g; persys --version') || true
    log "persys image: $(echo "$out" | tr '\n' ' ')"
    [ "$(echo "$out" | sed -n 1p)" = 10001 ] || fail "the persys image does not run as uid 10001: '$out'"
}

# persys-test/busybox:latest from the static busybox, made the way the test services make it.
workload_image() {
    svc_import_busybox "unix://$SOCK" "$WORKLOAD_IMAGE" "$ROOT/busybox-image" "$ROOT/workload-image.log" ||
        fail "making $WORKLOAD_IMAGE failed (see $ROOT/workload-image.log)"
}

write_env() {
    rand() { LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24 || true; }
    ADMIN_PASS=$(rand)
    # Everything the compose file reads comes from here (the caller's environment is not passed
    # to docker-compose, and a deploy/compose/.env is not read).
    cat >"$ROOT/compose.env" <<EOF
PERSYS_ADMIN_USERNAME=$ADMIN_USER
PERSYS_ADMIN_PASSWORD=$ADMIN_PASS
POSTGRES_PASSWORD=$(rand)
PERSYS_IMAGE=$PERSYS_IMAGE_TAG
PERSYS_POSTGRES_IMAGE=$POSTGRES_IMAGE_TAG
PERSYS_ETCD_IMAGE=$ETCD_IMAGE_TAG
PERSYS_DOCKER_SOCKET=$SOCK
PERSYS_AGENT_NODE_NAME=$NODE_NAME
PERSYS_LOG=info
EOF
    chmod 600 "$ROOT/compose.env"
    DC_TIMEOUT=60 dc "${PROFILES[@]}" config -q || fail "docker-compose config rejects the compose file"
}

# container_state SERVICE: health status (or state, without a healthcheck) of its container.
container_state() {
    local id
    id=$(DK_TIMEOUT=20 dk ps -aq --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" | head -n1)
    [ -n "$id" ] || { echo missing; return 0; }
    DK_TIMEOUT=20 dk inspect -f \
        '{{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}:{{.State.ExitCode}}{{end}}' "$id"
}

# wait_states TIMEOUT SERVICE=STATE...: poll until every service is in its state.
wait_states() {
    local timeout=$1 deadline pair svc want st pending summary
    shift
    deadline=$((SECONDS + timeout))
    while :; do
        pending=0
        summary=""
        for pair in "$@"; do
            svc=${pair%%=*}
            want=${pair#*=}
            st=$(container_state "$svc")
            summary+=" $svc=$st"
            [ "$st" = "$want" ] || pending=1
            case "$st" in
                exited:[1-9]* | unhealthy | dead*) fail "$svc is $st" ;;
            esac
        done
        [ "$pending" = 1 ] || { log "states:$summary"; return 0; }
        [ "$SECONDS" -lt "$deadline" ] || fail "not ready after ${timeout}s:$summary"
        sleep 1
    done
}

compose_up() {
    STEP_LOG="$ROOT/logs/compose-up.log"
    COMPOSE_UP=1
    # Waits for postgres and etcd to be healthy before starting the gateway and the scheduler.
    dc up -d --no-build >"$STEP_LOG" 2>&1 || fail "docker-compose up -d failed"
    cat "$STEP_LOG" >&2
    wait_states 240 certs=exited:0 postgres=healthy etcd=healthy gateway=healthy scheduler=healthy analyzer=healthy metrics=healthy
}

login() {
    local out
    out=$(in_ns timeout 10 curl -fsS http://127.0.0.1:9090/healthz 2>&1) || fail "gateway /healthz: $out"
    log "gateway /healthz on 127.0.0.1:9090 in the namespace: $out"
    printf '%s\n' "$ADMIN_PASS" | cli login -u "$ADMIN_USER" --password-stdin ||
        fail "persys login failed"
    cli whoami
}

agent_up() {
    local token
    token=$(cli token create --ttl 1h --max-uses 1 --description compose-test) ||
        fail "persys token create failed"
    [ -n "$token" ] || fail "persys token create printed no token"
    STEP_LOG="$ROOT/logs/compose-agent.log"
    DC_ENV=("PERSYS_JOIN_TOKEN=$token")
    dc --profile agent up -d --no-build >"$STEP_LOG" 2>&1 || fail "docker-compose --profile agent up -d failed"
    DC_ENV=()
    cat "$STEP_LOG" >&2
    wait_states 60 agent=running:0
}

node_ready() {
    local deadline=$((SECONDS + 120)) out=""
    while :; do
        out=$(cli node list 2>&1) || true
        if echo "$out" | awk 'NR > 1 && $3 == "Ready" { found = 1 } END { exit !found }'; then
            echo "$out" >&2
            return 0
        fi
        [ "$(container_state agent)" = running:0 ] || fail "the agent container is $(container_state agent)"
        [ "$SECONDS" -lt "$deadline" ] || fail "no Ready node after 120s; persys node list: $out"
        sleep 1
    done
}

host_metrics() {
    # The agent streams a sample every 5 s to the `metrics` service, which commits each batch
    # to the `metrics` schema of the compose PostgreSQL before acknowledging it.
    local deadline=$((SECONDS + 90)) out=""
    while :; do
        out=$(DC_TIMEOUT=30 dc exec -T postgres psql -U persys -d persys -tAc \
            "SELECT count(*) FROM metrics.ingest_batches" 2>&1) || true
        if [ "${out//[[:space:]]/}" -ge 2 ] 2>/dev/null; then
            log "metrics.ingest_batches holds $out batches from the agent"
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "no host metrics stored after 90s: $out; metrics log: $(dc logs --tail 20 metrics 2>&1)"
        sleep 2
    done
}

run_workload() {
    CLI_TIMEOUT=200 cli workload run "$WORKLOAD_IMAGE" --name hello --pull never --wait --wait-timeout 3m \
        -- sh -c 'echo hello-from-compose; sleep 600' || fail "persys workload run --wait failed"
    cli workload list
}

workload_logs() {
    local deadline=$((SECONDS + 60)) out=""
    while :; do
        out=$(cli workload logs hello 2>&1) || true
        if echo "$out" | grep -q '^hello-from-compose$'; then
            log "persys workload logs hello: $out"
            return 0
        fi
        [ "$SECONDS" -lt "$deadline" ] || fail "no 'hello-from-compose' in the workload's logs after 60s: $out"
        sleep 1
    done
}

remove_workload() {
    local deadline=$((SECONDS + 60)) out=""
    cli workload rm hello || fail "persys workload rm failed"
    while :; do
        out=$(cli workload list 2>&1) || true
        echo "$out" | grep -qw hello || break
        [ "$SECONDS" -lt "$deadline" ] || fail "workload hello still listed 60s after rm: $out"
        sleep 1
    done
    # The agent removes the container on the engine.
    while [ -n "$(DK_TIMEOUT=20 dk ps -aq --filter "ancestor=$WORKLOAD_IMAGE")" ]; do
        [ "$SECONDS" -lt "$deadline" ] || fail "the workload's container is still on the engine 60s after rm"
        sleep 1
    done
}

# The reconciler (`--profile kubernetes`) pointed at the test bench's kube-apiserver through a
# self-contained kubeconfig, as the compose file asks: it wins the Lease, writes the cluster
# persona, and serves ProjectService to the gateway over mTLS.
reconciler_up() {
    local server port ca cert key kc id holder deadline out
    if [ -z "${PERSYS_TEST_KUBECONFIG:-}" ]; then
        [ "${CI:-}" = true ] && fail "PERSYS_TEST_KUBECONFIG is not set: the reconciler step needs the test bench's kube-apiserver"
        log "PERSYS_TEST_KUBECONFIG is not set: the reconciler step is skipped"
        return 0
    fi
    k() { timeout 30 "$PERSYS_TEST_KUBECTL" --kubeconfig "$PERSYS_TEST_KUBECONFIG" "$@"; }
    field() { awk -v f="$1:" '$1 == f { print $2; exit }' "$PERSYS_TEST_KUBECONFIG"; }
    server=$(field server) ca=$(field certificate-authority)
    cert=$(field client-certificate) key=$(field client-key)
    port=${server##*:}
    [ -n "$port" ] && [ -f "$ca" ] && [ -f "$cert" ] && [ -f "$key" ] ||
        fail "cannot read server and certificate files from $PERSYS_TEST_KUBECONFIG"
    # A unix socket joins the two network namespaces: host side to the API server's loopback
    # port, namespace side on every address of the engine's host, where host.docker.internal
    # points.
    python3 "$HERE/relay.py" "unix:$ROOT/kube.sock" "tcp:127.0.0.1:$port" >"$ROOT/logs/relay-host.log" 2>&1 &
    RELAY_PIDS+=($!)
    local wait_until=$((SECONDS + 20))
    until grep -q listening "$ROOT/logs/relay-host.log" 2>/dev/null; do
        [ "$SECONDS" -lt "$wait_until" ] || fail "the host relay did not start: $(cat "$ROOT/logs/relay-host.log")"
        sleep 0.2
    done
    in_ns python3 "$HERE/relay.py" "tcp:0.0.0.0:6443" "unix:$ROOT/kube.sock" >"$ROOT/logs/relay-ns.log" 2>&1 &
    RELAY_PIDS+=($!)
    until grep -q listening "$ROOT/logs/relay-ns.log" 2>/dev/null; do
        [ "$SECONDS" -lt "$wait_until" ] || fail "the namespace relay did not start: $(cat "$ROOT/logs/relay-ns.log")"
        sleep 0.2
    done
    kc="$ROOT/kubeconfig"
    {
        echo "apiVersion: v1"
        echo "kind: Config"
        echo "clusters:"
        echo "- name: bench"
        echo "  cluster:"
        echo "    server: https://host.docker.internal:6443"
        echo "    tls-server-name: kubernetes"
        echo "    certificate-authority-data: $(base64 -w0 "$ca")"
        echo "users:"
        echo "- name: bench-admin"
        echo "  user:"
        echo "    client-certificate-data: $(base64 -w0 "$cert")"
        echo "    client-key-data: $(base64 -w0 "$key")"
        echo "contexts:"
        echo "- name: bench"
        echo "  context: {cluster: bench, user: bench-admin}"
        echo "current-context: bench"
    } >"$kc"
    chown 10001:10001 "$kc"
    chmod 600 "$kc"
    # The CRDs the reconciler follows, as the chart installs them.
    k apply --server-side --force-conflicts --field-manager persys-compose-test \
        -f "$REPO_ROOT/deploy/helm/persys/crds/persys-crds.yaml" >/dev/null || fail "applying the CRDs failed"
    # The cluster persona is the reconciler's to discover: gone first, so its status can only
    # come from this one.
    k delete clusterpersona cluster --ignore-not-found --wait >/dev/null || fail "deleting the cluster persona failed"
    STEP_LOG="$ROOT/logs/compose-reconciler.log"
    DC_ENV=("PERSYS_KUBECONFIG=$kc" "PERSYS_RECONCILER_PROJECTS=true")
    dc "${PROFILES[@]}" up -d --no-build reconciler >"$STEP_LOG" 2>&1 ||
        fail "docker-compose --profile kubernetes up -d reconciler failed"
    DC_ENV=()
    cat "$STEP_LOG" >&2
    wait_states 120 reconciler=healthy
    id=$(DK_TIMEOUT=20 dk ps -q --filter "label=com.docker.compose.service=reconciler" | head -n1)
    id=$(DK_TIMEOUT=20 dk inspect -f '{{.Config.Hostname}}' "$id")
    # Leader: the Lease names this container (its host name and a random suffix).
    deadline=$((SECONDS + 60))
    while :; do
        holder=$(k get lease persys-reconciler -n default -o 'jsonpath={.spec.holderIdentity}' 2>/dev/null) || true
        case "$holder" in "$id"*) break ;; esac
        [ "$SECONDS" -lt "$deadline" ] ||
            fail "the Lease is held by '$holder', not the compose reconciler $id; its log: $(dc logs --tail 20 reconciler 2>&1)"
        sleep 1
    done
    log "Lease persys-reconciler held by $holder"
    # Its controllers run: the cluster persona is discovered and its status written.
    deadline=$((SECONDS + 60))
    while :; do
        out=$(k get clusterpersona cluster -o 'jsonpath={.status.phase}' 2>/dev/null) || true
        [ -z "$out" ] || break
        [ "$SECONDS" -lt "$deadline" ] ||
            fail "no cluster persona status after 60s; its log: $(dc logs --tail 20 reconciler 2>&1)"
        sleep 1
    done
    log "ClusterPersona cluster: phase $out"
    # The gateway reaches it over mTLS: ProjectService answers through the public port.
    out=$(cli project list -o json 2>&1) || fail "persys project list through the gateway failed: $out"
    log "persys project list through the gateway: $(echo "$out" | head -c 200)"
}

compose_down() {
    STEP_LOG="$ROOT/logs/compose-down.log"
    dc "${PROFILES[@]}" down -v --timeout 10 >"$STEP_LOG" 2>&1 || fail "docker-compose down -v failed"
    COMPOSE_UP=0
    cat "$STEP_LOG" >&2
    local left
    left=$(DK_TIMEOUT=20 dk ps -aq)
    [ -z "$left" ] || fail "containers left after down: $(dk ps -a)"
    left=$(DK_TIMEOUT=20 dk volume ls -q --filter "label=com.docker.compose.project=$PROJECT")
    [ -z "$left" ] || fail "volumes left after down -v: $left"
}

# ---------------------------------------------------------------------------------------------

step "preflight";                           preflight
step "base image: debootstrap or cache";    base_tarball
step "private dockerd in netns";            start_dockerd
step "docker import base";                  import_base
step "build stand-ins (postgres, etcd)";    build_standins
step "build persys image (Dockerfile.prebuilt)"; build_persys
step "workload image $WORKLOAD_IMAGE";      workload_image
step "compose config";                      write_env
step "docker-compose up -d + healthy";      compose_up
step "persys login";                        login
step "join token + --profile agent up";     agent_up
step "node Ready";                          node_ready
step "host metrics in PostgreSQL";          host_metrics
step "workload run --wait";                 run_workload
step "workload logs";                       workload_logs
step "workload rm";                         remove_workload
step "--profile kubernetes: reconciler";    reconciler_up
step "docker-compose down -v";              compose_down
step_end
