#!/usr/bin/env bash
# Runs the README's grpcurl lines (between the readme-grpcurl markers) verbatim with the real
# grpcurl against a real persys-stack, from a directory laid out like the one `scripts/dev`
# runs in (.persys/ with the admin password). Called by scripts/test with PERSYS_TEST_GRPCURL.
# The stack listens on 127.0.0.1:8080 as the README says; only when that port is taken are
# the lines' `localhost:8080` pointed at a free port instead (and that is said).
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
GRPCURL=${PERSYS_TEST_GRPCURL:?PERSYS_TEST_GRPCURL is not set: scripts/test builds grpcurl (scripts/tools/build grpcurl)}
# The binaries scripts/test built (CARGO_TARGET_DIR when the build output lives elsewhere).
BIN_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug"
STACK="$BIN_DIR/persys-stack"
PERSYS="$BIN_DIR/persys"
for bin in "$STACK" "$PERSYS"; do
    [ -x "$bin" ] || { echo "readme-grpcurl: $bin is missing (cargo build --workspace --bins)" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/persys-readme.XXXXXX)
STACK_PID=""
cleanup() {
    if [ -n "$STACK_PID" ] && kill -0 "$STACK_PID" 2>/dev/null; then
        kill -TERM "$STACK_PID" 2>/dev/null || true
        timeout 20 tail --pid="$STACK_PID" -f /dev/null 2>/dev/null || kill -KILL "$STACK_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
    echo "readme-grpcurl: FAILED: $*" >&2
    echo "---- last lines of the stack's log ----" >&2
    tail -n 30 "$WORK/stack.log" >&2 || true
    exit 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

PORT=8080
if ! port_free "$PORT"; then
    PORT=$(free_port)
    echo "readme-grpcurl: 127.0.0.1:8080 is in use here; running the README lines against port $PORT" >&2
fi
ADMIN_PORT=$(free_port)

# The README's block: the lines between the markers, without the code fence.
BLOCK=$(awk '/<!-- readme-grpcurl:begin/ { on = 1; next } /<!-- readme-grpcurl:end/ { on = 0 } on && !/^```/' \
    "$REPO_ROOT/README.md")
[ -n "$BLOCK" ] || fail "no readme-grpcurl block found in README.md"
[ "$PORT" = 8080 ] || BLOCK=${BLOCK//localhost:8080/localhost:$PORT}

cd "$WORK"
# The process driver: this check needs no Docker engine; the agent joins either way.
PERSYS_ADMIN_LISTEN="127.0.0.1:$ADMIN_PORT" setsid "$STACK" --dir .persys --listen "127.0.0.1:$PORT" \
    --driver process >"$WORK/stack.log" 2>&1 </dev/null &
STACK_PID=$!

# Ready when the stack's own agent is listed as a node (which needs the gateway, the scheduler
# and the agent's join), polled with the persys CLI; bounded.
export HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config"
mkdir -p "$HOME"
deadline=$((SECONDS + 120))
until [ -s .persys/admin-password ] &&
    "$PERSYS" --server "http://127.0.0.1:$PORT" login -u admin --password-stdin <.persys/admin-password >/dev/null 2>&1 &&
    "$PERSYS" --server "http://127.0.0.1:$PORT" node list -o json 2>/dev/null | grep -q '"hostname"'; do
    kill -0 "$STACK_PID" 2>/dev/null || fail "persys-stack exited during start-up"
    [ "$SECONDS" -lt "$deadline" ] || fail "persys-stack did not list its node within 120s"
    sleep 0.5
done

echo "readme-grpcurl: running the README's grpcurl lines:" >&2
printf '%s\n' "$BLOCK" | sed 's/^/    /' >&2
OUT=$(PATH="$(dirname "$GRPCURL"):$PATH" timeout 60 bash -euo pipefail -c "$BLOCK" 2>&1) ||
    fail "the README's grpcurl lines exited non-zero; output:
$OUT"
printf '%s\n' "$OUT" | sed 's/^/    | /' >&2

# What each line must have shown.
for want in \
    'persys.gateway.v1.AuthService' \
    'persys.scheduler.v1.SchedulerService' \
    'grpc.reflection.v1.ServerReflection' \
    'grpc.reflection.v1alpha.ServerReflection' \
    '"username": "admin"' \
    '"nodes": ['; do
    grep -qF -- "$want" <<<"$OUT" || fail "expected '$want' in the output of the README's lines"
done
echo "readme-grpcurl: ok (the README's grpcurl lines ran verbatim against persys-stack on port $PORT)"
