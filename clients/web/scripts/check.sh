#!/usr/bin/env bash
# The dashboard's checks, as scripts/test runs them: npm ci, typecheck, unit tests, build, the
# bundle budget, then the end-to-end suite in Chromium against a real persys-stack (the binary
# scripts/test built, in $CARGO_TARGET_DIR/debug). Without Chromium the end-to-end suite is
# skipped, or failed under CI=true. Screenshots and figures go to $CARGO_TARGET_DIR/web-e2e.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

npm ci --no-audit --no-fund --prefer-offline
echo "web: typecheck" && npm run --silent typecheck
echo "web: unit tests" && npx vitest run
echo "web: build" && npx vite build --logLevel warn
node scripts/bundle-size.mjs dist

chromium=${PERSYS_CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    if [ "${CI:-}" = true ]; then
        echo "web: $chromium is missing (apt-get install chromium): FAILED under CI=true" >&2
        exit 1
    fi
    echo "web: $chromium is missing (apt-get install chromium): end-to-end suite skipped" >&2
    exit 0
fi
echo "web: end-to-end in $("$chromium" --version 2>/dev/null | head -n 1)"
npx vitest run --config vitest.e2e.config.ts
