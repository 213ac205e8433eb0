#!/usr/bin/env bash
# Checks the Helm chart deploy/helm/persys for real; called by scripts/test (docs/deploy.md,
# "Checked by the test command"):
#
#   1. helm lint --strict, with the default values and with ci/all-on-values.yaml (every optional
#      part of the chart on);
#   2. helm template with both; every rendered object must have apiVersion, kind and name, and the
#      all-on values must render every file of templates/ and every kind the chart can make;
#      The metrics pipeline (component `metrics`, off by default): with the all-on values its
#      Deployment runs metrics-pipeline with PERSYS_METRICS_DATABASE_URL from a Secret (never a
#      literal), its Service, ServiceAccount, PDB, NetworkPolicy (7400 from the gateway's and the
#      agents' pods) and cert-manager Certificate (spiffe://persys/metrics) exist, the gateway's
#      upstreams name metrics=https://persys-metrics:7400 (once; gateway.upstreams.metrics wins)
#      and the agent gets PERSYS_AGENT_METRICS_PIPELINE / _INTERVAL; with the defaults, and with
#      the agent on but metrics off, no metrics object, upstream or agent metrics variable;
#      The reconciler (component `reconciler`, off by default): with the all-on values its
#      Deployment (`reconciler run`, 2 replicas, RollingUpdate, a ServiceAccount token, /healthz
#      probes on the admin port, the Lease in the release namespace with the pod's name as
#      identity, the webhook's port, TLS Secret and settings, PersonaService on 7500 with its
#      mTLS Secret and allowed callers), its Certificate (spiffe://persys/reconciler) and the
#      gateway's upstream to it (none of these with reconciler.grpc.enabled=false and
#      reconciler.dora.enabled=false; with DORA on alone, the certificate and
#      PERSYS_RECONCILER_METRICS_PIPELINE but no listener), ServiceAccount,
#      Service (grpc, admin, and 443 to the webhook), NetworkPolicy (7500 from the gateway's
#      pods), PDB, ClusterRole with exactly the
#      rules the code needs (namespaces get, list, watch: members, the webhook) and ClusterRoleBinding, the
#      leader-election Role (create leases; get/update only its Lease) and RoleBinding, the
#      ValidatingWebhookConfiguration (Ignore, the namespaceSelector, never the release
#      namespace) and its cert-manager Certificate render; without cert-manager the webhook needs
#      existingSecret and caBundle (refused otherwise, naming them); failurePolicy Fail reaches
#      the registration and the flag; reconciler.prometheus reaches the env with its token Secret
#      and CA ConfigMap mounted (no Prometheus without a URL); one replica has no PDB; with reconciler.namespace a
#      RoleBinding in that namespace replaces the ClusterRoleBinding and the webhook selects that
#      namespace only; with the defaults no reconciler object, webhook, Role or binding of any kind;
#   3. values.schema.json: draft-07, every property typed, every key of values.yaml described
#      and every described key present in values.yaml; misspelt keys (top-level, nested, deep)
#      and wrong types or enum values must make helm fail, naming the key; free-form maps stay open;
#   4. the stand-in CRDs of tests/helm/crds (cert-manager Certificate/Issuer, Prometheus Operator
#      ServiceMonitor, Argo CD Application) applied to the API server and Established; so are the chart's own CRDs
#      (crds/), by server-side apply under the field manager persys-tests as the other tests
#      that share them do (helm install then skips them: no field of theirs is Helm's);
#   5. helm install (no --wait: the test cluster has no kubelet) with the defaults into
#      persys-default and with the all-on values into persys-all; every object of
#      `helm get manifest` must exist in the cluster, CRDs the chart ships must be Established,
#      and `helm get notes` must be non-empty; read back from the API server, the metrics
#      Deployment of persys-all takes its database URL from the Secret, the gateway forwards to
#      it and the agent DaemonSet points at it, and persys-default has none of that;
#      the reconciler: the chart's CRD applicationpersonas.dorgu.io (crds/) is Established with
#      a status subresource; its ClusterRole as stored has exactly the expected rules and is
#      bound to its ServiceAccount only, and so is its leader-election Role; asked as that
#      ServiceAccount (impersonation), the API server allows what the code calls (kubectl auth
#      can-i, and `can-i --list` beyond what an account without bindings gets is exactly those
#      rules: with the Lease rules in the release namespace, without them elsewhere), refuses the
#      rest (delete, update, create, get, secrets, events, leases elsewhere or deleted, ...), and
#      real calls succeed (a status patch by server-side apply, lists, a Lease created, read and
#      updated in the release namespace) while reading a Secret, deleting the Lease or creating
#      one in another namespace are Forbidden; the ValidatingWebhookConfiguration is stored as
#      rendered, and the API server really consults it: with its failurePolicy switched to Fail
#      for the test, a Deployment in a namespace carrying the check's label is refused for the
#      unreachable webhook, while in an unlabelled namespace or the (labelled) release namespace
#      it is admitted, and with Ignore back it is admitted everywhere; persys-default has no
#      reconciler object or webhook and its ServiceAccounts no such rights; after a helm upgrade
#      with reconciler.namespace=persys-default the rights hold in that namespace only (its
#      namespace readable, not others) and the webhook selects only it;
#   6. helm uninstall of both (the reconciler's ClusterRole and ValidatingWebhookConfiguration go
#      with it), the namespaces (and the webhook test's namespace) and the
#      stand-in CRDs deleted; the chart's CRDs (crds/) stay: Helm never deletes them, and other
#      tests share applicationpersonas.dorgu.io; Helm's field ownership of them is dropped.
#
# Environment:
#   HELM, KUBECTL              the binaries (default: $PERSYS_TEST_HELM / $PERSYS_TEST_KUBECTL,
#                              else helm, kubectl on PATH)
#   PERSYS_TEST_KUBECONFIG     admin kubeconfig of a test kube-apiserver (+ controller-manager).
#                              Unset: steps 4-6 are skipped (they fail under CI=true).
#   PERSYS_HELM_CALL_TIMEOUT   seconds any one helm/kubectl call may take (default 120)
#
# Exits non-zero if any step failed, naming it; prints a summary line per step at the end.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CHART="$REPO_ROOT/deploy/helm/persys"
ALL_ON="$CHART/ci/all-on-values.yaml"
CRD_DIR="$REPO_ROOT/tests/helm/crds"
HELM=${HELM:-${PERSYS_TEST_HELM:-helm}}
KUBECTL=${KUBECTL:-${PERSYS_TEST_KUBECTL:-kubectl}}
KCFG=${PERSYS_TEST_KUBECONFIG:-}
CALL_TIMEOUT=${PERSYS_HELM_CALL_TIMEOUT:-120}
RELEASE=persys
NS_DEFAULT=persys-default
NS_ALL=persys-all
# Every kind the chart can render; the all-on values must produce each of them.
ALL_KINDS=(Certificate ClusterRole ClusterRoleBinding DaemonSet Deployment Issuer NetworkPolicy
    PodDisruptionBudget Role RoleBinding Secret Service ServiceAccount ServiceMonitor StatefulSet
    ValidatingWebhookConfiguration)

log() { printf '[helm-check] %s\n' "$*" >&2; }
# Inside a step: say why it failed and end the step.
fail() {
    printf '[helm-check]   FAIL: %s\n' "$*" >&2
    exit 1
}
# Inside a step: end it as skipped (exit code 77).
skip() {
    printf '[helm-check]   SKIP: %s\n' "$*" >&2
    exit 77
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/persys-helm-check.XXXXXX")
# Helm keeps no state of the caller's: no repositories, plugins or registry logins of theirs.
export HELM_CACHE_HOME="$WORK/helm/cache" HELM_CONFIG_HOME="$WORK/helm/config" \
    HELM_DATA_HOME="$WORK/helm/data"
unset KUBECONFIG HELM_NAMESPACE HELM_KUBECONTEXT

# t CMD...: run CMD with the per-call timeout; 124 means it timed out.
t() {
    local rc=0
    timeout --kill-after=10 "$CALL_TIMEOUT" "$@" || rc=$?
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        printf '[helm-check]   timed out after %ss: %s\n' "$CALL_TIMEOUT" "$*" >&2
    fi
    return "$rc"
}
kc() { t "$KUBECTL" --kubeconfig "$KCFG" --request-timeout=30s "$@"; }
hc() { t "$HELM" --kubeconfig "$KCFG" "$@"; }

# objects FILE [DEFAULT_NS]: one line per object of a multi-document manifest,
# "apiVersion<TAB>kind<TAB>namespace<TAB>name<TAB>source template"; a document with some of
# apiVersion, kind, metadata.name missing gives a line starting with "ERROR".
objects() {
    awk -v def="${2:-}" '
        function unq(s) { gsub(/^["\047]|["\047]$/, "", s); return s }
        function flush() {
            if (api != "" || kind != "" || name != "") {
                if (api == "" || kind == "" || name == "")
                    printf "ERROR\t%s\t%s\t%s\t%s\n", api, kind, name, src
                else
                    printf "%s\t%s\t%s\t%s\t%s\n", api, kind, (ns == "" ? def : ns), name, src
            }
            api = kind = name = ns = ""; meta = 0
        }
        /^---/ { flush(); next }
        /^# Source: / { src = $3; next }
        /^apiVersion:/ { api = unq($2); meta = 0; next }
        /^kind:/ { kind = unq($2); meta = 0; next }
        /^metadata:/ { meta = 1; next }
        /^[^ #]/ { meta = 0 }
        meta && /^  name:/ { name = unq($2) }
        meta && /^  namespace:/ { ns = unq($2) }
        END { flush() }
    ' "$1"
}

# ---------------------------------------------------------------------------
# Steps (each runs in a subshell of its own, with errexit on)
# ---------------------------------------------------------------------------

step_tools() {
    local v
    v=$(t "$HELM" version --short 2>&1) || fail "helm ($HELM) does not run: $v"
    log "helm: $v"
    command -v jq >/dev/null 2>&1 || fail "jq is not on PATH (the schema checks need it)"
    [ -f "$CHART/values.schema.json" ] || fail "$CHART/values.schema.json is missing"
    [ -f "$ALL_ON" ] || fail "$ALL_ON is missing"
}

# lint NAME [HELM ARGS...]
lint() {
    local out="$WORK/lint-$1.txt"
    shift
    if ! t "$HELM" lint --strict "$CHART" "$@" >"$out" 2>&1; then
        sed 's/^/    /' "$out" >&2
        fail "helm lint --strict $*"
    fi
    sed 's/^/    /' "$out" >&2
}
step_lint_default() { lint default; }
step_lint_all_on() { lint all-on -f "$ALL_ON"; }

# render NAME NAMESPACE [HELM ARGS...]: helm template into $WORK/NAME.yaml and its object list.
render() {
    local name=$1 ns=$2 out="$WORK/$1.yaml"
    shift 2
    if ! t "$HELM" template "$RELEASE" "$CHART" -n "$ns" "$@" >"$out" 2>"$out.err"; then
        sed 's/^/    /' "$out.err" >&2
        fail "helm template $*"
    fi
    objects "$out" "$ns" >"$WORK/$name.objects"
    if grep -q '^ERROR' "$WORK/$name.objects"; then
        grep '^ERROR' "$WORK/$name.objects" | sed 's/^/    /' >&2
        fail "rendered documents without apiVersion, kind or metadata.name"
    fi
    [ -s "$WORK/$name.objects" ] || fail "helm template rendered no object"
    log "$(wc -l <"$WORK/$name.objects") objects:"
    cut -f2 "$WORK/$name.objects" | sort | uniq -c | sed 's/^/    /' >&2
}
step_template_default() { render default "$NS_DEFAULT"; }
step_template_all_on() {
    local f kind missing=()
    render all-on "$NS_ALL" -f "$ALL_ON"
    # The all-on values must reach every template and every kind.
    for f in "$CHART"/templates/*.yaml; do
        grep -q "^# Source: persys/templates/$(basename "$f")\$" "$WORK/all-on.yaml" ||
            missing+=("templates/$(basename "$f")")
    done
    for kind in "${ALL_KINDS[@]}"; do
        cut -f2 "$WORK/all-on.objects" | grep -qx "$kind" || missing+=("kind $kind")
    done
    [ "${#missing[@]}" -eq 0 ] || fail "ci/all-on-values.yaml does not render: ${missing[*]}"
    log "every template file and kind is rendered"
}

# doc FILE KIND NAME: the document of a multi-document manifest holding the object KIND/NAME
# (empty if there is none).
doc() {
    awk -v want_kind="$2" -v want_name="$3" '
        function unq(s) { gsub(/^["\047]|["\047]$/, "", s); return s }
        function flush() { if (kind == want_kind && name == want_name) printf "%s", buf; buf = kind = name = ""; meta = 0 }
        /^---/ { flush(); next }
        { buf = buf $0 "\n" }
        /^kind:/ { kind = unq($2); meta = 0; next }
        /^metadata:/ { meta = 1; next }
        /^[^ #]/ { meta = 0 }
        meta && /^  name:/ { name = unq($2) }
        END { flush() }
    ' "$1"
}
# env_entry VAR: from a document on stdin, the container env entry `- name: VAR` and its lines.
env_entry() {
    awk -v var="$1" '
        function indent(s) { match(s, /^ */); return RLENGTH }
        on && (/^[[:space:]]*$/ || indent($0) <= n) { on = 0 }
        on { print; next }
        $0 ~ "^ *- name: \"?" var "\"?$" { on = 1; n = indent($0); print }
    '
}
# env_value VAR: the literal value of env entry VAR of a document on stdin, unquoted.
env_value() {
    env_entry "$1" | awk '/^ *value:/ { sub(/^ *value: */, ""); gsub(/^"|"$/, ""); print; exit }'
}

# The metrics pipeline, as ci/all-on-values.yaml configures it (release persys: objects persys-*).
METRICS_NAME=$RELEASE-metrics
METRICS_URL=https://$METRICS_NAME:7400
METRICS_DB_SECRET=persys-metrics-db
METRICS_DB_KEY=database-url

step_metrics_render() {
    local on="$WORK/metrics-on.yaml" off="$WORK/metrics-off.yaml" agent_only="$WORK/metrics-agent-only.yaml"
    local override="$WORK/metrics-override.yaml" d v f kind var
    t "$HELM" template "$RELEASE" "$CHART" -n "$NS_ALL" -f "$ALL_ON" >"$on" 2>"$WORK/m.err" ||
        { sed 's/^/    /' "$WORK/m.err" >&2; fail "helm template -f ci/all-on-values.yaml"; }
    t "$HELM" template "$RELEASE" "$CHART" -n "$NS_DEFAULT" >"$off" 2>"$WORK/m.err" ||
        { sed 's/^/    /' "$WORK/m.err" >&2; fail "helm template (default values)"; }
    t "$HELM" template "$RELEASE" "$CHART" -n "$NS_ALL" -f "$ALL_ON" --set metrics.enabled=false >"$agent_only" 2>"$WORK/m.err" ||
        { sed 's/^/    /' "$WORK/m.err" >&2; fail "helm template -f ci/all-on-values.yaml --set metrics.enabled=false"; }
    t "$HELM" template "$RELEASE" "$CHART" -n "$NS_ALL" -f "$ALL_ON" --set gateway.upstreams.metrics=https://elsewhere:7400 >"$override" 2>"$WORK/m.err" ||
        { sed 's/^/    /' "$WORK/m.err" >&2; fail "helm template -f ci/all-on-values.yaml --set gateway.upstreams.metrics=..."; }

    # On (all-on values): every object of the component.
    for kind in Deployment Service ServiceAccount PodDisruptionBudget NetworkPolicy Certificate; do
        [ -n "$(doc "$on" "$kind" "$METRICS_NAME")" ] || fail "all-on values: no $kind $METRICS_NAME"
    done
    d=$(doc "$on" Deployment "$METRICS_NAME")
    grep -q '^ *command: \["metrics-pipeline"\]$' <<<"$d" || fail "Deployment $METRICS_NAME does not run metrics-pipeline"
    grep -q '^ *app.kubernetes.io/component: metrics$' <<<"$d" || fail "Deployment $METRICS_NAME is not labelled component=metrics"
    for var in PERSYS_METRICS_LISTEN PERSYS_METRICS_DATABASE_URL PERSYS_METRICS_DATABASE_SCHEMA \
        PERSYS_METRICS_DATABASE_MAX_CONNECTIONS PERSYS_METRICS_ALLOWED_CALLERS PERSYS_METRICS_RAW_RETENTION \
        PERSYS_METRICS_WATCH_BUFFER PERSYS_METRICS_DRAIN_TIMEOUT PERSYS_TLS_CA PERSYS_TLS_CERT PERSYS_TLS_KEY \
        PERSYS_ADMIN_LISTEN PERSYS_LOG_FORMAT PERSYS_LOG; do
        [ -n "$(env_entry "$var" <<<"$d")" ] || fail "Deployment $METRICS_NAME does not set $var"
    done
    [ "$(env_value PERSYS_METRICS_LISTEN <<<"$d")" = 0.0.0.0:7400 ] ||
        fail "Deployment $METRICS_NAME: PERSYS_METRICS_LISTEN is '$(env_value PERSYS_METRICS_LISTEN <<<"$d")', not 0.0.0.0:7400"
    v=$(env_entry PERSYS_METRICS_DATABASE_URL <<<"$d")
    if ! grep -q '^ *secretKeyRef:$' <<<"$v" || ! grep -q "^ *name: $METRICS_DB_SECRET\$" <<<"$v" ||
        ! grep -q "^ *key: $METRICS_DB_KEY\$" <<<"$v" || grep -q '^ *value:' <<<"$v"; then
        sed 's/^/    /' <<<"$v" >&2
        fail "Deployment $METRICS_NAME: PERSYS_METRICS_DATABASE_URL is not taken from Secret $METRICS_DB_SECRET, key $METRICS_DB_KEY"
    fi
    grep -q '^ *path: /healthz$' <<<"$d" || fail "Deployment $METRICS_NAME does not probe /healthz"
    # DORA: DevLake's URL and connections as values, its API key and the GitHub token from
    # Secrets, no Redis unless asked for.
    [ "$(env_value PERSYS_METRICS_DEVLAKE_CONNECTIONS <<<"$d")" = "1,4" ] ||
        fail "Deployment $METRICS_NAME: PERSYS_METRICS_DEVLAKE_CONNECTIONS is '$(env_value PERSYS_METRICS_DEVLAKE_CONNECTIONS <<<"$d")', not 1,4"
    for var in PERSYS_METRICS_DEVLAKE_TOKEN PERSYS_METRICS_GITHUB_TOKEN; do
        v=$(env_entry "$var" <<<"$d")
        grep -q '^ *secretKeyRef:$' <<<"$v" && ! grep -q '^ *value:' <<<"$v" ||
            fail "Deployment $METRICS_NAME: $var is not taken from a Secret"
    done
    [ -z "$(env_entry PERSYS_METRICS_REDIS_URL <<<"$d")" ] || fail "Deployment $METRICS_NAME sets PERSYS_METRICS_REDIS_URL without metrics.dora.redis"
    [ -n "$(env_value PERSYS_METRICS_SCHEDULER <<<"$d")" ] || fail "Deployment $METRICS_NAME: no PERSYS_METRICS_SCHEDULER (rollouts for DORA)"
    ! grep -q 'PERSYS_METRICS_GITHUB_APP_\|github-app' <<<"$d" || fail "Deployment $METRICS_NAME: GitHub App settings without metrics.dora.github.app"
    # A GitHub App instead of the token: its ids as values, its key mounted read-only from the
    # Secret (owner-only mode) and named by file; both at once, or an app without its key or
    # installation, refused naming what to set.
    local app=(--set metrics.dora.github.tokenSecret= --set metrics.dora.github.app.id=4242
        --set metrics.dora.github.app.installationId=77 --set metrics.dora.github.app.privateKeySecret=gh-app)
    tmpl metrics-app -n "$NS_ALL" -f "$ALL_ON" "${app[@]}"
    d=$(doc "$WORK/metrics-app.yaml" Deployment "$METRICS_NAME")
    [ "$(env_value PERSYS_METRICS_GITHUB_APP_ID <<<"$d")" = 4242 ] && [ "$(env_value PERSYS_METRICS_GITHUB_APP_INSTALLATION_ID <<<"$d")" = 77 ] &&
        [ "$(env_value PERSYS_METRICS_GITHUB_APP_PRIVATE_KEY_FILE <<<"$d")" = /etc/persys/github-app/private-key.pem ] ||
        fail "with metrics.dora.github.app: the app's env is not set as given"
    [ -z "$(env_entry PERSYS_METRICS_GITHUB_TOKEN <<<"$d")" ] || fail "with a GitHub App and no tokenSecret: PERSYS_METRICS_GITHUB_TOKEN still set"
    grep -A3 '^ *- name: github-app$' <<<"$d" | grep -q '^ *readOnly: true$' &&
        grep -A3 '^ *- name: github-app$' <<<"$d" | grep -q '^ *secretName: gh-app$' && grep -q '^ *defaultMode: 0400$' <<<"$d" ||
        fail "with metrics.dora.github.app: the key is not mounted read-only from Secret gh-app with mode 0400"
    expect_fail() {
        if t "$HELM" template "$RELEASE" "$CHART" -n "$NS_ALL" -f "$ALL_ON" "${@:2}" >"$WORK/app.err" 2>&1 || ! grep -qF -- "$1" "$WORK/app.err"; then
            sed 's/^/    /' "$WORK/app.err" >&2
            fail "helm template ${*:2} should fail naming '$1'"
        fi
    }
    expect_fail "not both" "${app[@]}" --set metrics.dora.github.tokenSecret=persys-github
    expect_fail "privateKeySecret is required" "${app[@]}" --set metrics.dora.github.app.privateKeySecret=
    expect_fail "installationId is required" "${app[@]}" --set metrics.dora.github.app.installationId=0
    log "GitHub App: ids as values, key file from Secret gh-app (read-only, 0400); token and app together refused"
    # The reconciler records ArgoCD syncs in this pipeline, with its mTLS material.
    d=$(doc "$on" Deployment "$RELEASE-reconciler")
    [ "$(env_value PERSYS_RECONCILER_METRICS_PIPELINE <<<"$d")" = "$METRICS_URL" ] ||
        fail "reconciler: PERSYS_RECONCILER_METRICS_PIPELINE is '$(env_value PERSYS_RECONCILER_METRICS_PIPELINE <<<"$d")', not $METRICS_URL"
    [ -n "$(env_value PERSYS_TLS_CERT <<<"$d")" ] || fail "reconciler: records DORA deployments without PERSYS_TLS_CERT"
    grep -q '^ *app.kubernetes.io/component: reconciler$' <<<"$(doc "$on" NetworkPolicy "$METRICS_NAME")" ||
        fail "NetworkPolicy $METRICS_NAME does not admit the reconciler's pods"
    d=$(doc "$on" Service "$METRICS_NAME")
    grep -q '^ *- name: grpc$' <<<"$d" && grep -q '^ *port: 7400$' <<<"$d" && grep -q '^ *- name: admin$' <<<"$d" ||
        fail "Service $METRICS_NAME lacks the grpc port 7400 or a port named admin"
    d=$(doc "$on" NetworkPolicy "$METRICS_NAME")
    grep -q '^ *port: 7400$' <<<"$d" && grep -q '^ *app.kubernetes.io/component: gateway$' <<<"$d" &&
        grep -q '^ *app.kubernetes.io/component: agent$' <<<"$d" ||
        fail "NetworkPolicy $METRICS_NAME does not admit the gateway's and the agents' pods to 7400"
    grep -q '^ *- spiffe://persys/metrics$' <<<"$(doc "$on" Certificate "$METRICS_NAME")" ||
        fail "Certificate $METRICS_NAME does not carry spiffe://persys/metrics"
    v=$(doc "$on" Deployment "$RELEASE-gateway" | env_value PERSYS_GATEWAY_UPSTREAMS)
    tr ',' '\n' <<<"$v" | grep -qx "metrics=$METRICS_URL" ||
        fail "the gateway's upstreams '$v' do not include metrics=$METRICS_URL"
    d=$(doc "$on" DaemonSet "$RELEASE-agent")
    [ -n "$d" ] || fail "all-on values: no DaemonSet $RELEASE-agent"
    v=$(env_value PERSYS_AGENT_METRICS_PIPELINE <<<"$d")
    [ "$v" = "$METRICS_URL" ] || fail "agent DaemonSet: PERSYS_AGENT_METRICS_PIPELINE is '$v', not $METRICS_URL"
    [ -n "$(env_value PERSYS_AGENT_METRICS_INTERVAL <<<"$d")" ] || fail "agent DaemonSet: no PERSYS_AGENT_METRICS_INTERVAL"
    v=$(env_value PERSYS_AGENT_HOST_COMMANDS <<<"$d")
    [ "$v" = "uptime,/usr/bin/df" ] || fail "agent DaemonSet: PERSYS_AGENT_HOST_COMMANDS is '$v', not the listed uptime,/usr/bin/df"
    ! grep -q 'PERSYS_AGENT_HOST_SHELL' <<<"$d" || fail "agent DaemonSet: host shell on without agent.hostShell"
    log "all-on values: metrics Deployment (database URL from Secret $METRICS_DB_SECRET), Service, ServiceAccount, PDB, NetworkPolicy, Certificate; gateway upstream and agent env point at $METRICS_URL"

    # gateway.upstreams.metrics replaces the automatic entry instead of adding a second one.
    v=$(doc "$override" Deployment "$RELEASE-gateway" | env_value PERSYS_GATEWAY_UPSTREAMS)
    [ "$(tr ',' '\n' <<<"$v" | grep -c '^metrics=')" -eq 1 ] && tr ',' '\n' <<<"$v" | grep -qx 'metrics=https://elsewhere:7400' ||
        fail "with gateway.upstreams.metrics set, the gateway's upstreams are '$v'"

    # Off: the defaults, and the all-on values with only the metrics pipeline turned off.
    for f in "$off" "$agent_only"; do
        ! objects "$f" | awk -F'\t' -v n="$METRICS_NAME" '$4 == n || $5 ~ /templates\/metrics-/' | grep . >&2 ||
            fail "$(basename "$f"): metrics objects rendered with metrics.enabled=false"
        ! grep -n 'PERSYS_METRICS_\|PERSYS_AGENT_METRICS_\|app.kubernetes.io/component: metrics$\|spiffe://persys/metrics' "$f" >&2 ||
            fail "$(basename "$f"): metrics settings rendered with metrics.enabled=false"
        v=$(doc "$f" Deployment "$RELEASE-gateway" | env_value PERSYS_GATEWAY_UPSTREAMS)
        ! tr ',' '\n' <<<"$v" | grep -q '^metrics=' || fail "$(basename "$f"): the gateway's upstreams '$v' name metrics"
    done
    [ -n "$(doc "$agent_only" DaemonSet "$RELEASE-agent")" ] || fail "metrics off, agent on: no DaemonSet $RELEASE-agent"
    log "defaults, and agent on with metrics off: no metrics object, upstream or agent metrics variable"
}

# The reconciler, as ci/all-on-values.yaml configures it (release persys in persys-all).
RECONCILER_NAME=$RELEASE-reconciler
RECONCILER_SA=system:serviceaccount:$NS_ALL:$RECONCILER_NAME
# Its ClusterRole, binding and ValidatingWebhookConfiguration carry the release namespace
# (cluster-scoped names).
RECONCILER_ROLE=$NS_ALL-$RECONCILER_NAME
WEBHOOK_CONFIG=$RECONCILER_ROLE
WEBHOOK_NAME=validate.persona.dorgu.io
WEBHOOK_CERT=$RECONCILER_NAME-webhook
WEBHOOK_SECRET=$RECONCILER_NAME-webhook-tls
# The all-on webhook selects only namespaces with this label, which only this check sets.
WEBHOOK_LABEL=persys-helm-check/webhook
WEBHOOK_NS=persys-helm-check-webhook
# Leader election: the Lease (named after the component by default) and the Role in the release
# namespace letting the ServiceAccount create it and get/update it by name.
LEASE_NAME=$RECONCILER_NAME
LEADER_ROLE=$RECONCILER_NAME-leader-election
LEASE_RULES=$(sort <<<"leases.coordination.k8s.io create
leases.coordination.k8s.io[$LEASE_NAME] get
leases.coordination.k8s.io[$LEASE_NAME] update")
# Exactly the Kubernetes API calls services/reconciler makes, as "resource[.group][/subresource]
# verb" (kubectl's spelling): the persona controller lists and watches personas, writes their
# status by server-side apply (PATCH), lists and watches Deployments and StatefulSets, and lists
# the pods of an unhealthy workload; PersonaService and ProjectService follow namespaces (list,
# watch) for their persys.io/members annotation, or get the one namespace a restricted
# reconciler serves; the admission webhook gets the workload's namespace (its
# dorgu.io/webhook-mode label). Change these lists only together with the code.
# Sorted as the lists they are compared with are.
RECONCILER_RULES=$(sort <<<"applications.argoproj.io list
applications.argoproj.io watch
applicationpersonas.dorgu.io list
applicationpersonas.dorgu.io watch
applicationpersonas.dorgu.io/status patch
deployments.apps list
deployments.apps watch
namespaces get
namespaces list
namespaces watch
pods list
statefulsets.apps list
statefulsets.apps watch")
# ClusterPersona discovery's own ClusterRole (reconciler.clusterDiscovery, on by default, off
# with reconciler.namespace): nodes followed, namespaces, pods and personas listed, the
# ClusterPersonas it reconciles and creates, their status written.
DISCOVERY_ROLE=$RECONCILER_ROLE-discovery
DISCOVERY_RULES=$(sort <<<"applicationpersonas.dorgu.io list
clusterpersonas.dorgu.io create
clusterpersonas.dorgu.io list
clusterpersonas.dorgu.io watch
clusterpersonas.dorgu.io/status patch
namespaces list
nodes list
nodes watch
pods list")
# Kapsa Registries (reconciler.registries, on by default, off with reconciler.namespace): the
# Registries it checks and their status (a ClusterRole of its own), and the Secrets of the
# credentials namespace (the release namespace by default; a Role there).
REGISTRY_ROLE=$RECONCILER_ROLE-registries
REGISTRY_RULES=$(sort <<<"registries.kapsa-project.io list
registries.kapsa-project.io watch
registries.kapsa-project.io/status patch")
CREDENTIALS_ROLE=$RECONCILER_NAME-registry-credentials
CREDENTIALS_RULES=$(sort <<<"secrets get
secrets list
secrets watch")

# rendered_rules: the rules of a ClusterRole or Role document on stdin (flow lists, as the chart
# writes them) in the form of RECONCILER_RULES ("resource[name]" for resourceNames, as
# `kubectl auth can-i --list` prints them), sorted; "UNPARSED ..." for a rule line it cannot read.
rendered_rules() {
    awk '
        function items(s,   a, n, i, out) {
            if (s !~ /^\[.*\]$/) return "\001"
            s = substr(s, 2, length(s) - 2); gsub(/["\047 ]/, "", s)
            return s
        }
        function emit(   ng, nr, nv, nn, G, R, V, N, i, j, k, l, p, name) {
            if (g == "\001" || r == "\001" || v == "\001" || n == "\001") { print "UNPARSED rule"; return }
            ng = split(g, G, ","); nr = split(r, R, ","); nv = split(v, V, ","); nn = split(n, N, ",")
            if (ng == 0) { ng = 1; G[1] = "" }
            if (nn == 0) { nn = 1; N[1] = "" }
            for (i = 1; i <= ng; i++) for (j = 1; j <= nr; j++) for (k = 1; k <= nv; k++) for (l = 1; l <= nn; l++) {
                split(R[j], p, "/"); name = p[1] (G[i] == "" ? "" : "." G[i]) (p[2] == "" ? "" : "/" p[2])
                print name (N[l] == "" ? "" : "[" N[l] "]") " " V[k]
            }
        }
        /^rules:/ { on = 1; next }
        on && /^[^ #]/ { on = 0 }
        !on || /^ *#/ || /^ *$/ { next }
        /^  - apiGroups: / { if (inrule) emit(); inrule = 1; g = items(substr($0, index($0, ":") + 2)); r = v = "\001"; n = ""; next }
        /^    resources: / { r = items(substr($0, index($0, ":") + 2)); next }
        /^    resourceNames: / { n = items(substr($0, index($0, ":") + 2)); next }
        /^    verbs: / { v = items(substr($0, index($0, ":") + 2)); next }
        { print "UNPARSED " $0 }
        END { if (inrule) emit() }
    ' | sort
}

# tmpl NAME [HELM ARGS...]: helm template of release persys into $WORK/NAME.yaml (must succeed).
tmpl() {
    local out="$WORK/$1.yaml"
    shift
    t "$HELM" template "$RELEASE" "$CHART" "$@" >"$out" 2>"$out.err" ||
        { sed 's/^/    /' "$out.err" >&2; fail "helm template $*"; }
}
# binding_ok DOC KIND NAME: the binding document DOC binds role KIND/NAME to the reconciler's
# ServiceAccount in $NS_ALL, and nothing else.
binding_ok() {
    grep -A3 '^roleRef:' <<<"$1" | grep -q "^  kind: $2\$" && grep -A3 '^roleRef:' <<<"$1" | grep -q "^  name: $3\$" &&
        [ "$(grep -A10 '^subjects:' <<<"$1" | grep -c '^  - ')" -eq 1 ] &&
        grep -A3 '^subjects:' <<<"$1" | grep -q "^    name: $RECONCILER_NAME\$" &&
        grep -A3 '^subjects:' <<<"$1" | grep -q "^    namespace: $NS_ALL\$"
}

step_reconciler_render() {
    local on="$WORK/rec-on.yaml" off="$WORK/rec-off.yaml" nsd="$WORK/rec-ns.yaml" d v var kind got
    tmpl rec-on -n "$NS_ALL" -f "$ALL_ON"
    tmpl rec-off -n "$NS_DEFAULT"
    tmpl rec-ns -n "$NS_ALL" -f "$ALL_ON" --set reconciler.namespace=team-a

    # On (all-on values): every object of the component, and none it must not have.
    for kind in Deployment Service ServiceAccount NetworkPolicy PodDisruptionBudget; do
        [ -n "$(doc "$on" "$kind" "$RECONCILER_NAME")" ] || fail "all-on values: no $kind $RECONCILER_NAME"
    done
    for kind in ClusterRole ClusterRoleBinding ValidatingWebhookConfiguration; do
        [ -n "$(doc "$on" "$kind" "$RECONCILER_ROLE")" ] || fail "all-on values: no $kind $RECONCILER_ROLE"
    done
    for kind in Role RoleBinding; do
        [ -n "$(doc "$on" "$kind" "$LEADER_ROLE")" ] || fail "all-on values: no $kind $LEADER_ROLE"
    done
    got=$(doc "$on" ClusterRole "$DISCOVERY_ROLE" | rendered_rules)
    [ "$got" = "$DISCOVERY_RULES" ] ||
        fail "ClusterRole $DISCOVERY_ROLE grants"$'\n'"$(sed 's/^/      /' <<<"$got")"$'\n'"    instead of exactly"$'\n'"$(sed 's/^/      /' <<<"$DISCOVERY_RULES")"
    binding_ok "$(doc "$on" ClusterRoleBinding "$DISCOVERY_ROLE")" ClusterRole "$DISCOVERY_ROLE" ||
        fail "ClusterRoleBinding $DISCOVERY_ROLE does not bind ClusterRole $DISCOVERY_ROLE to ServiceAccount $NS_ALL/$RECONCILER_NAME only"
    grep -A1 'name: PERSYS_RECONCILER_CLUSTER_DISCOVERY$' <<<"$(doc "$on" Deployment "$RECONCILER_NAME")" | grep -q 'value: "true"' ||
        fail "all-on values: the reconciler does not run ClusterPersona discovery"
    [ -z "$(doc "$nsd" ClusterRole "$DISCOVERY_ROLE")$(doc "$nsd" ClusterRoleBinding "$DISCOVERY_ROLE")" ] ||
        fail "reconciler.namespace set: discovery's cluster-wide role is rendered (discovery is off there)"
    grep -A1 'name: PERSYS_RECONCILER_CLUSTER_DISCOVERY$' <<<"$(doc "$nsd" Deployment "$RECONCILER_NAME")" | grep -q 'value: "false"' ||
        fail "reconciler.namespace set: discovery is not turned off"
    tmpl rec-nodisc -n "$NS_ALL" -f "$ALL_ON" --set reconciler.clusterDiscovery.enabled=false
    [ -z "$(doc "$WORK/rec-nodisc.yaml" ClusterRole "$DISCOVERY_ROLE")" ] &&
        grep -A1 'name: PERSYS_RECONCILER_CLUSTER_DISCOVERY$' "$WORK/rec-nodisc.yaml" | grep -q 'value: "false"' ||
        fail "reconciler.clusterDiscovery.enabled=false: discovery's role rendered or discovery still on"
    # Baselines (reconciler.prometheus): off without a URL; with one, the URL, interval and
    # window, and the token Secret and CA ConfigMap mounted where the flags point.
    ! grep -q 'PERSYS_RECONCILER_PROMETHEUS' <<<"$(doc "$on" Deployment "$RECONCILER_NAME")" ||
        fail "all-on values (no reconciler.prometheus.url): the reconciler is given a Prometheus"
    tmpl rec-prom -n "$NS_ALL" -f "$ALL_ON" --set reconciler.prometheus.url=http://prometheus.monitoring.svc:9090 \
        --set reconciler.prometheus.tokenSecret=prom-token --set reconciler.prometheus.caConfigMap=prom-ca \
        --set reconciler.prometheus.interval=30m
    d=$(doc "$WORK/rec-prom.yaml" Deployment "$RECONCILER_NAME")
    for var in "PERSYS_RECONCILER_PROMETHEUS_URL http://prometheus.monitoring.svc:9090" \
        "PERSYS_RECONCILER_BASELINE_INTERVAL 30m" "PERSYS_RECONCILER_BASELINE_WINDOW 1h" \
        "PERSYS_RECONCILER_PROMETHEUS_TOKEN_FILE /etc/persys/prometheus/token" \
        "PERSYS_RECONCILER_PROMETHEUS_CA_FILE /etc/persys/prometheus-ca/ca.crt"; do
        read -r k v <<<"$var"
        grep -A1 "name: $k\$" <<<"$d" | grep -q "value: \"$v\"" || fail "reconciler.prometheus: $k is not \"$v\""
    done
    grep -A2 '^ *secret:$' <<<"$d" | grep -q 'secretName: prom-token' && grep -A1 '^ *configMap:$' <<<"$d" | grep -q 'name: prom-ca' ||
        fail "reconciler.prometheus: the token Secret prom-token or the CA ConfigMap prom-ca is not mounted"
    # Registries: their ClusterRole and the credentials Role in the release namespace, exactly;
    # the flag names that namespace; none of it with reconciler.namespace or registries off.
    got=$(doc "$on" ClusterRole "$REGISTRY_ROLE" | rendered_rules)
    [ "$got" = "$REGISTRY_RULES" ] || fail "ClusterRole $REGISTRY_ROLE grants '$got' instead of exactly '$REGISTRY_RULES'"
    binding_ok "$(doc "$on" ClusterRoleBinding "$REGISTRY_ROLE")" ClusterRole "$REGISTRY_ROLE" ||
        fail "ClusterRoleBinding $REGISTRY_ROLE does not bind ClusterRole $REGISTRY_ROLE to the reconciler only"
    d=$(doc "$on" Role "$CREDENTIALS_ROLE")
    got=$(rendered_rules <<<"$d")
    [ "$got" = "$CREDENTIALS_RULES" ] && grep -q "^  namespace: $NS_ALL$" <<<"$d" ||
        fail "Role $CREDENTIALS_ROLE is not exactly '$CREDENTIALS_RULES' in $NS_ALL"
    grep -A1 'name: PERSYS_RECONCILER_REGISTRY_CREDENTIALS_NAMESPACE$' <<<"$(doc "$on" Deployment "$RECONCILER_NAME")" | grep -q "value: \"$NS_ALL\"" ||
        fail "all-on values: the reconciler is not told to read registry credentials from $NS_ALL"
    [ -z "$(doc "$nsd" ClusterRole "$REGISTRY_ROLE")$(doc "$nsd" Role "$CREDENTIALS_ROLE")" ] &&
        ! grep -q PERSYS_RECONCILER_REGISTRY_CREDENTIALS_NAMESPACE "$nsd" ||
        fail "reconciler.namespace set: the Registry roles or flag are rendered (Registries are cluster-wide)"
    tmpl rec-noreg -n "$NS_ALL" -f "$ALL_ON" --set reconciler.registries.enabled=false
    [ -z "$(doc "$WORK/rec-noreg.yaml" ClusterRole "$REGISTRY_ROLE")$(doc "$WORK/rec-noreg.yaml" Role "$CREDENTIALS_ROLE")" ] ||
        fail "reconciler.registries.enabled=false: the Registry roles are rendered"
    tmpl rec-creds -n "$NS_ALL" -f "$ALL_ON" --set reconciler.registries.credentialsNamespace=registry-creds
    grep -q '^  namespace: registry-creds$' <<<"$(doc "$WORK/rec-creds.yaml" Role "$CREDENTIALS_ROLE")" &&
        grep -A1 'name: PERSYS_RECONCILER_REGISTRY_CREDENTIALS_NAMESPACE$' "$WORK/rec-creds.yaml" | grep -q 'value: "registry-creds"' ||
        fail "reconciler.registries.credentialsNamespace: the Role or the flag is not in registry-creds"
    [ -n "$(doc "$on" Certificate "$WEBHOOK_CERT")" ] || fail "all-on values: no Certificate $WEBHOOK_CERT for the webhook"
    for kind in RoleBinding Role; do
        [ -z "$(doc "$on" "$kind" "$RECONCILER_NAME")$(doc "$on" "$kind" "$RECONCILER_ROLE")" ] ||
            fail "all-on values: a $kind $RECONCILER_NAME or $RECONCILER_ROLE (every namespace: no RoleBinding to the ClusterRole)"
    done
    # PersonaService (reconciler.grpc, on by default): its mTLS identity, and the gateway routes
    # users to it.
    grep -q '^ *- spiffe://persys/reconciler$' <<<"$(doc "$on" Certificate "$RECONCILER_NAME")" ||
        fail "Certificate $RECONCILER_NAME does not carry spiffe://persys/reconciler"
    v=$(doc "$on" Deployment "$RELEASE-gateway" | env_value PERSYS_GATEWAY_UPSTREAMS)
    tr ',' '\n' <<<"$v" | grep -qx "reconciler=https://$RECONCILER_NAME:7500" ||
        fail "the gateway's upstreams '$v' do not include reconciler=https://$RECONCILER_NAME:7500"
    d=$(doc "$on" Deployment "$RECONCILER_NAME")
    grep -q '^ *command: \["reconciler", "run"\]$' <<<"$d" || fail "Deployment $RECONCILER_NAME does not run 'reconciler run'"
    grep -q '^ *app.kubernetes.io/component: reconciler$' <<<"$d" || fail "Deployment $RECONCILER_NAME is not labelled component=reconciler"
    grep -q '^  replicas: 2$' <<<"$d" || fail "Deployment $RECONCILER_NAME does not run the 2 replicas of reconciler.replicaCount"
    grep -A1 '^  strategy:$' <<<"$d" | grep -q '^    type: RollingUpdate$' || fail "Deployment $RECONCILER_NAME: strategy is not RollingUpdate"
    grep -q "^ *serviceAccountName: $RECONCILER_NAME\$" <<<"$d" || fail "Deployment $RECONCILER_NAME does not use ServiceAccount $RECONCILER_NAME"
    grep -q '^ *automountServiceAccountToken: true$' <<<"$d" || fail "Deployment $RECONCILER_NAME does not mount its ServiceAccount token"
    grep -A1 '^ *- name: admin$' <<<"$d" | grep -q '^ *containerPort: 9090$' || fail "Deployment $RECONCILER_NAME has no container port admin 9090"
    grep -A1 '^ *- name: webhook$' <<<"$d" | grep -q '^ *containerPort: 9443$' || fail "Deployment $RECONCILER_NAME has no container port webhook 9443"
    grep -A1 '^ *- name: grpc$' <<<"$d" | grep -q '^ *containerPort: 7500$' || fail "Deployment $RECONCILER_NAME has no container port grpc 7500"
    for var in startupProbe readinessProbe livenessProbe; do
        grep -A4 "^ *$var:\$" <<<"$d" | grep -q '^ *path: /healthz$' && grep -A4 "^ *$var:\$" <<<"$d" | grep -q '^ *port: admin$' ||
            fail "Deployment $RECONCILER_NAME: $var is not /healthz on the admin port"
    done
    grep -q '^ *readOnlyRootFilesystem: true$' <<<"$d" && grep -q '^ *runAsNonRoot: true$' <<<"$d" &&
        grep -q '^ *allowPrivilegeEscalation: false$' <<<"$d" || fail "Deployment $RECONCILER_NAME lacks the chart's securityContext"
    grep -q '^ *kubernetes.io/os: linux$' <<<"$d" || fail "Deployment $RECONCILER_NAME ignores reconciler.nodeSelector"
    grep -A6 '^ *topologySpreadConstraints:$' <<<"$d" | grep -q 'app.kubernetes.io/component: reconciler' ||
        fail "Deployment $RECONCILER_NAME ignores reconciler.topologySpreadConstraints"
    grep -A6 '^ *resources:$' <<<"$d" | grep -q '^ *requests:$' || fail "Deployment $RECONCILER_NAME has no resource requests"
    for var in PERSYS_RECONCILER_REQUEUE PERSYS_ADMIN_LISTEN PERSYS_LOG_FORMAT PERSYS_LOG PERSYS_EXTRA; do
        [ -n "$(env_entry "$var" <<<"$d")" ] || fail "Deployment $RECONCILER_NAME does not set $var"
    done
    # name=expected value of the literal settings.
    for var in PERSYS_RECONCILER_REQUEUE=30s PERSYS_ADMIN_LISTEN=0.0.0.0:9090 PERSYS_RECONCILER_LEASE_NAMESPACE="$NS_ALL" \
        PERSYS_RECONCILER_LEASE_NAME="$LEASE_NAME" PERSYS_RECONCILER_LEASE_DURATION=10s \
        PERSYS_RECONCILER_WEBHOOK_LISTEN=0.0.0.0:9443 PERSYS_RECONCILER_WEBHOOK_MODE=enforcing \
        PERSYS_RECONCILER_WEBHOOK_FAILURE_POLICY=ignore PERSYS_RECONCILER_WEBHOOK_TLS_CERT=/etc/persys/webhook/tls.crt \
        PERSYS_RECONCILER_WEBHOOK_TLS_KEY=/etc/persys/webhook/tls.key PERSYS_RECONCILER_WEBHOOK_TLS_CA=/etc/persys/webhook/ca.crt \
        PERSYS_RECONCILER_LISTEN=0.0.0.0:7500 PERSYS_RECONCILER_ALLOWED_CALLERS=gateway PERSYS_TLS_CA=/etc/persys/tls/ca.pem \
        PERSYS_TLS_CERT=/etc/persys/tls/cert.pem PERSYS_TLS_KEY=/etc/persys/tls/key.pem; do
        v=$(env_value "${var%%=*}" <<<"$d")
        [ "$v" = "${var#*=}" ] || fail "Deployment $RECONCILER_NAME: ${var%%=*} is '$v', not ${var#*=}"
    done
    # Each replica's identity in the Lease is its pod's name (downward API).
    v=$(env_entry PERSYS_RECONCILER_IDENTITY <<<"$d")
    grep -q '^ *fieldPath: metadata.name$' <<<"$v" && ! grep -q '^ *value:' <<<"$v" ||
        fail "Deployment $RECONCILER_NAME: PERSYS_RECONCILER_IDENTITY is not the pod's name (fieldRef metadata.name)"
    # The webhook's certificate: cert-manager's Secret, mounted whole (no subPath, so renewals
    # reach the pod) where the TLS variables point.
    grep -A3 '^ *- name: webhook-tls$' <<<"$d" | grep -q '^ *mountPath: /etc/persys/webhook$' ||
        fail "Deployment $RECONCILER_NAME does not mount webhook-tls at /etc/persys/webhook"
    grep -A3 '^ *- name: webhook-tls$' <<<"$d" | grep -q "^ *secretName: $WEBHOOK_SECRET\$" ||
        fail "Deployment $RECONCILER_NAME: the webhook-tls volume is not Secret $WEBHOOK_SECRET"
    ! grep -q '^ *subPath:' <<<"$d" || fail "Deployment $RECONCILER_NAME mounts with subPath (renewed certificates would not reach the pod)"
    # In-cluster account, every namespace; its mTLS material (cert-manager's Secret) where the
    # TLS variables point.
    for var in PERSYS_RECONCILER_KUBECONFIG PERSYS_RECONCILER_NAMESPACE; do
        [ -z "$(env_entry "$var" <<<"$d")" ] || fail "Deployment $RECONCILER_NAME sets $var"
    done
    grep -A2 '^ *- name: tls$' <<<"$d" | grep -q '^ *mountPath: /etc/persys/tls$' &&
        grep -A2 '^ *- name: tls$' <<<"$d" | grep -q "^ *secretName: $RECONCILER_NAME-tls\$" ||
        fail "Deployment $RECONCILER_NAME does not mount Secret $RECONCILER_NAME-tls at /etc/persys/tls"
    d=$(doc "$on" Service "$RECONCILER_NAME")
    grep -A1 '^ *- name: admin$' <<<"$d" | grep -q '^ *port: 9090$' || fail "Service $RECONCILER_NAME has no port named admin (9090)"
    grep -A2 '^ *- name: webhook$' <<<"$d" | grep -q '^ *port: 443$' && grep -A2 '^ *- name: webhook$' <<<"$d" | grep -q '^ *targetPort: webhook$' ||
        fail "Service $RECONCILER_NAME has no port webhook 443 -> the container's webhook port"
    grep -A2 '^ *- name: grpc$' <<<"$d" | grep -q '^ *port: 7500$' || fail "Service $RECONCILER_NAME has no port grpc 7500"
    [ "$(grep -c '^ *- name: ' <<<"$d")" -eq 3 ] || fail "Service $RECONCILER_NAME exposes more than its grpc, admin and webhook ports"
    d=$(doc "$on" NetworkPolicy "$RECONCILER_NAME")
    grep -q '^ *port: 9090$' <<<"$d" && grep -q '^ *kubernetes.io/metadata.name: monitoring$' <<<"$d" ||
        fail "NetworkPolicy $RECONCILER_NAME does not admit networkPolicy.adminFrom to the admin port 9090"
    grep -A4 '^ *port: 9443$' <<<"$d" | grep -q '^ *cidr: 192.0.2.0/24$' ||
        fail "NetworkPolicy $RECONCILER_NAME does not admit reconciler.webhook.from to the webhook port 9443"
    grep -A6 '^ *port: 7500$' <<<"$d" | grep -q '^ *app.kubernetes.io/component: gateway$' ||
        fail "NetworkPolicy $RECONCILER_NAME does not admit the gateway's pods to the gRPC port 7500"
    d=$(doc "$on" PodDisruptionBudget "$RECONCILER_NAME")
    grep -q '^  minAvailable: 1$' <<<"$d" && grep -q '^ *app.kubernetes.io/component: reconciler$' <<<"$d" ||
        fail "PodDisruptionBudget $RECONCILER_NAME is not minAvailable 1 over the reconciler's pods"
    got=$(doc "$on" ClusterRole "$RECONCILER_ROLE" | rendered_rules)
    [ "$got" = "$RECONCILER_RULES" ] ||
        fail "ClusterRole $RECONCILER_ROLE (webhook on) grants"$'\n'"$(sed 's/^/      /' <<<"$got")"$'\n'"    instead of exactly"$'\n'"$(sed 's/^/      /' <<<"$RECONCILER_RULES")"
    ! grep -q 'resourceNames\|nonResourceURLs\|aggregationRule' <<<"$(doc "$on" ClusterRole "$RECONCILER_ROLE")" ||
        fail "ClusterRole $RECONCILER_ROLE has resourceNames, nonResourceURLs or an aggregationRule"
    binding_ok "$(doc "$on" ClusterRoleBinding "$RECONCILER_ROLE")" ClusterRole "$RECONCILER_ROLE" ||
        fail "ClusterRoleBinding $RECONCILER_ROLE does not bind ClusterRole $RECONCILER_ROLE to ServiceAccount $NS_ALL/$RECONCILER_NAME only"
    d=$(doc "$on" Role "$LEADER_ROLE")
    grep -q "^  namespace: $NS_ALL\$" <<<"$d" || fail "Role $LEADER_ROLE is not in the release namespace $NS_ALL"
    got=$(rendered_rules <<<"$d")
    [ "$got" = "$LEASE_RULES" ] ||
        fail "Role $LEADER_ROLE grants"$'\n'"$(sed 's/^/      /' <<<"$got")"$'\n'"    instead of exactly"$'\n'"$(sed 's/^/      /' <<<"$LEASE_RULES")"
    d=$(doc "$on" RoleBinding "$LEADER_ROLE")
    grep -q "^  namespace: $NS_ALL\$" <<<"$d" && binding_ok "$d" Role "$LEADER_ROLE" ||
        fail "RoleBinding $NS_ALL/$LEADER_ROLE does not bind Role $LEADER_ROLE to ServiceAccount $NS_ALL/$RECONCILER_NAME only"

    # The webhook's registration and certificate.
    d=$(doc "$on" ValidatingWebhookConfiguration "$WEBHOOK_CONFIG")
    for v in "^  - name: $WEBHOOK_NAME\$" '^    admissionReviewVersions: \["v1"\]$' '^    sideEffects: None$' \
        '^    failurePolicy: Ignore$' '^    timeoutSeconds: 3$' "^        name: $RECONCILER_NAME\$" "^        namespace: $NS_ALL\$" \
        '^        path: /validate$' '^        port: 443$' '^      - apiGroups: \[apps\]$' '^        apiVersions: \[v1\]$' \
        '^        resources: \[deployments, statefulsets\]$' '^        operations: \[CREATE, UPDATE\]$' \
        "^    cert-manager.io/inject-ca-from: $NS_ALL/$WEBHOOK_CERT\$" "^        $WEBHOOK_LABEL: \"on\"\$"; do
        grep -q -- "$v" <<<"$d" || fail "ValidatingWebhookConfiguration $WEBHOOK_CONFIG has no line matching '$v'"
    done
    [ "$(grep -c '^  - name: ' <<<"$d")" -eq 1 ] || fail "ValidatingWebhookConfiguration $WEBHOOK_CONFIG registers more than one webhook"
    ! grep -q 'caBundle' <<<"$d" || fail "ValidatingWebhookConfiguration $WEBHOOK_CONFIG has a caBundle although cert-manager injects it"
    # Never the release namespace (the webhook must not block the reconciler's own rollout), and
    # kube-system stays out (values.yaml's default, kept under the all-on label).
    grep -A2 '^        - key: kubernetes.io/metadata.name$' <<<"$d" | grep -A1 '^          operator: NotIn$' | grep -q "^          values: \[\"$NS_ALL\"\]\$" ||
        fail "ValidatingWebhookConfiguration $WEBHOOK_CONFIG does not exclude the release namespace $NS_ALL"
    grep -A4 '^        - key: kubernetes.io/metadata.name$' <<<"$d" | grep -q '^ *- kube-system$' ||
        fail "ValidatingWebhookConfiguration $WEBHOOK_CONFIG does not exclude kube-system"
    ! grep -q '^          operator: In$' <<<"$d" || fail "ValidatingWebhookConfiguration $WEBHOOK_CONFIG is confined to a namespace without reconciler.namespace"
    d=$(doc "$on" Certificate "$WEBHOOK_CERT")
    grep -q "^  secretName: $WEBHOOK_SECRET\$" <<<"$d" && grep -q "^    - $RECONCILER_NAME.$NS_ALL.svc\$" <<<"$d" &&
        grep -q '^    - server auth$' <<<"$d" && grep -A1 '^  issuerRef:$' <<<"$d" | grep -q '^    name: persys-ca$' ||
        fail "Certificate $WEBHOOK_CERT is not for $RECONCILER_NAME.$NS_ALL.svc (server auth, Secret $WEBHOOK_SECRET, issuer persys-ca)"
    log "all-on values: reconciler Deployment (reconciler run, 2 replicas, RollingUpdate, token mounted, /healthz on admin, Lease $NS_ALL/$LEASE_NAME with the pod's name as identity, PersonaService on 7500 with Certificate $RECONCILER_NAME for the gateway's upstream, webhook 9443 with Secret $WEBHOOK_SECRET), ServiceAccount, Service (grpc, admin, webhook 443), NetworkPolicy, PDB, ClusterRole ($(wc -l <<<"$RECONCILER_RULES") rules, as expected), ClusterRoleBinding, Role $LEADER_ROLE (create leases; get/update $LEASE_NAME) and its RoleBinding, ValidatingWebhookConfiguration (Ignore, not $NS_ALL) and Certificate $WEBHOOK_CERT"

    # PersonaService and DORA recording off: no gRPC port, listener, mTLS material, Certificate
    # or gateway upstream.
    tmpl rec-nogrpc -n "$NS_ALL" -f "$ALL_ON" --set reconciler.grpc.enabled=false --set reconciler.dora.enabled=false
    d="$WORK/rec-nogrpc.yaml"
    [ -z "$(doc "$d" Certificate "$RECONCILER_NAME")" ] || fail "reconciler.grpc.enabled=false: Certificate $RECONCILER_NAME rendered"
    ! doc "$d" Deployment "$RECONCILER_NAME" | grep -n 'PERSYS_RECONCILER_LISTEN\|PERSYS_TLS_\|/etc/persys/tls\|containerPort: 7500' >&2 ||
        fail "reconciler.grpc.enabled=false: the reconciler still listens or mounts mTLS material"
    ! doc "$d" Service "$RECONCILER_NAME" | grep -q 'port: 7500' || fail "reconciler.grpc.enabled=false: Service port 7500 rendered"
    v=$(doc "$d" Deployment "$RELEASE-gateway" | env_value PERSYS_GATEWAY_UPSTREAMS)
    ! tr ',' '\n' <<<"$v" | grep -q '^reconciler=' || fail "reconciler.grpc.enabled=false: the gateway's upstreams '$v' name the reconciler"
    log "PersonaService off: no gRPC port, listener, mTLS material, Certificate or gateway upstream"

    # PersonaService off, DORA recording on: the mTLS material and Certificate for the client
    # side only; no listener, port or upstream.
    tmpl rec-doraonly -n "$NS_ALL" -f "$ALL_ON" --set reconciler.grpc.enabled=false
    d="$WORK/rec-doraonly.yaml"
    [ -n "$(doc "$d" Certificate "$RECONCILER_NAME")" ] || fail "reconciler.dora without grpc: no Certificate $RECONCILER_NAME for its client side"
    v=$(doc "$d" Deployment "$RECONCILER_NAME")
    [ -n "$(env_value PERSYS_RECONCILER_METRICS_PIPELINE <<<"$v")" ] && grep -q '/etc/persys/tls' <<<"$v" ||
        fail "reconciler.dora without grpc: no PERSYS_RECONCILER_METRICS_PIPELINE or mTLS material"
    ! grep -n 'PERSYS_RECONCILER_LISTEN\|containerPort: 7500' <<<"$v" >&2 || fail "reconciler.dora without grpc: the reconciler listens"
    log "PersonaService off, DORA on: client mTLS material and Certificate, no listener"

    # The webhook off (the rest as all-on): no webhook object, port, variable or volume.
    tmpl rec-nowh -n "$NS_ALL" -f "$ALL_ON" --set reconciler.webhook.enabled=false
    d="$WORK/rec-nowh.yaml"
    [ -z "$(doc "$d" ValidatingWebhookConfiguration "$WEBHOOK_CONFIG")$(doc "$d" Certificate "$WEBHOOK_CERT")" ] ||
        fail "reconciler.webhook.enabled=false: a ValidatingWebhookConfiguration or webhook Certificate is rendered"
    ! grep -n 'PERSYS_RECONCILER_WEBHOOK_\|webhook-tls\|containerPort: 9443\|port: 9443\|port: 443$' "$d" >&2 ||
        fail "reconciler.webhook.enabled=false: webhook settings, ports or volumes rendered"
    got=$(doc "$d" ClusterRole "$RECONCILER_ROLE" | rendered_rules)
    [ "$got" = "$RECONCILER_RULES" ] ||
        fail "ClusterRole $RECONCILER_ROLE (webhook off) grants"$'\n'"$(sed 's/^/      /' <<<"$got")"$'\n'"    instead of exactly"$'\n'"$(sed 's/^/      /' <<<"$RECONCILER_RULES")"
    [ -n "$(doc "$d" Role "$LEADER_ROLE")" ] || fail "reconciler.webhook.enabled=false: no leader-election Role (election is always on)"
    log "webhook off: no webhook object, port, variable or volume; the ClusterRole keeps exactly its $(wc -l <<<"$RECONCILER_RULES") rules (namespaces are read for member scoping too); the Lease Role stays"

    # failurePolicy Fail reaches both the registration and the reconciler's own flag.
    tmpl rec-fail -n "$NS_ALL" -f "$ALL_ON" --set reconciler.webhook.failurePolicy=Fail
    grep -q '^    failurePolicy: Fail$' <<<"$(doc "$WORK/rec-fail.yaml" ValidatingWebhookConfiguration "$WEBHOOK_CONFIG")" &&
        [ "$(doc "$WORK/rec-fail.yaml" Deployment "$RECONCILER_NAME" | env_value PERSYS_RECONCILER_WEBHOOK_FAILURE_POLICY)" = fail ] ||
        fail "reconciler.webhook.failurePolicy=Fail: not failurePolicy Fail and PERSYS_RECONCILER_WEBHOOK_FAILURE_POLICY=fail"

    # Without cert-manager the certificate is the user's: both existingSecret and caBundle are
    # required (naming them), and with both the registration carries the caBundle.
    expect_reject "webhook without cert-manager or existingSecret" reconciler.webhook.existingSecret -f "$ALL_ON" --set tls.certManager.enabled=false
    expect_reject "webhook without cert-manager or caBundle" reconciler.webhook.caBundle -f "$ALL_ON" --set tls.certManager.enabled=false \
        --set reconciler.webhook.existingSecret=my-webhook-tls
    expect_reject "webhook caBundle not base64" caBundle -f "$ALL_ON" --set tls.certManager.enabled=false \
        --set reconciler.webhook.existingSecret=my-webhook-tls --set 'reconciler.webhook.caBundle=-----BEGIN CERTIFICATE-----'
    v=$(printf -- '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n' | base64 | tr -d '\n')
    tmpl rec-nocm -n "$NS_ALL" -f "$ALL_ON" --set tls.certManager.enabled=false --set reconciler.webhook.existingSecret=my-webhook-tls \
        --set reconciler.webhook.caBundle="$v"
    d=$(doc "$WORK/rec-nocm.yaml" ValidatingWebhookConfiguration "$WEBHOOK_CONFIG")
    grep -q "^      caBundle: $v\$" <<<"$d" && ! grep -q 'inject-ca-from' <<<"$d" ||
        fail "without cert-manager: the ValidatingWebhookConfiguration does not carry reconciler.webhook.caBundle (or still asks cert-manager)"
    [ -z "$(doc "$WORK/rec-nocm.yaml" Certificate "$WEBHOOK_CERT")" ] || fail "without cert-manager: a webhook Certificate is rendered"
    grep -A3 '^ *- name: webhook-tls$' <<<"$(doc "$WORK/rec-nocm.yaml" Deployment "$RECONCILER_NAME")" | grep -q '^ *secretName: my-webhook-tls$' ||
        fail "without cert-manager: the webhook-tls volume is not reconciler.webhook.existingSecret"
    # Out-of-range settings fail in the schema.
    expect_reject "webhook timeoutSeconds above 10" timeoutSeconds -f "$ALL_ON" --set reconciler.webhook.timeoutSeconds=11
    expect_reject "webhook failurePolicy spelt like the flag" failurePolicy -f "$ALL_ON" --set reconciler.webhook.failurePolicy=ignore
    log "failurePolicy Fail reaches the registration and the flag; without cert-manager existingSecret and caBundle are required and used"

    # reconciler.namespace: the same ClusterRole, bound in that namespace only; the webhook
    # selects that namespace only; the Lease stays in the release namespace.
    d=$(doc "$nsd" RoleBinding "$RECONCILER_ROLE")
    grep -q '^  namespace: team-a$' <<<"$d" && grep -A3 '^roleRef:' <<<"$d" | grep -q "^  name: $RECONCILER_ROLE\$" ||
        fail "reconciler.namespace=team-a: no RoleBinding $RECONCILER_ROLE in team-a to ClusterRole $RECONCILER_ROLE"
    [ -z "$(doc "$nsd" ClusterRoleBinding "$RECONCILER_ROLE")" ] || fail "reconciler.namespace=team-a: a ClusterRoleBinding is still rendered"
    d=$(doc "$nsd" Deployment "$RECONCILER_NAME")
    [ "$(env_value PERSYS_RECONCILER_NAMESPACE <<<"$d")" = team-a ] || fail "reconciler.namespace=team-a: PERSYS_RECONCILER_NAMESPACE is not team-a"
    [ "$(env_value PERSYS_RECONCILER_LEASE_NAMESPACE <<<"$d")" = "$NS_ALL" ] || fail "reconciler.namespace=team-a: the Lease left the release namespace"
    grep -A2 '^        - key: kubernetes.io/metadata.name$' <<<"$(doc "$nsd" ValidatingWebhookConfiguration "$WEBHOOK_CONFIG")" |
        grep -A1 '^          operator: In$' | grep -q '^          values: \["team-a"\]$' ||
        fail "reconciler.namespace=team-a: the webhook does not select namespace team-a only"
    log "reconciler.namespace=team-a: RoleBinding in team-a, no ClusterRoleBinding, PERSYS_RECONCILER_NAMESPACE=team-a, the webhook selects team-a only, the Lease stays in $NS_ALL"

    # Replica counts: several are fine now (leader election); one has no PDB.
    tmpl rec-one -n "$NS_ALL" -f "$ALL_ON" --set reconciler.replicaCount=1
    [ -z "$(doc "$WORK/rec-one.yaml" PodDisruptionBudget "$RECONCILER_NAME")" ] || fail "reconciler.replicaCount=1: a PodDisruptionBudget is rendered (it could only block drains)"
    grep -q '^  replicas: 1$' <<<"$(doc "$WORK/rec-one.yaml" Deployment "$RECONCILER_NAME")" || fail "reconciler.replicaCount=1: the Deployment does not run 1 replica"
    tmpl rec-three -n "$NS_ALL" -f "$ALL_ON" --set reconciler.replicaCount=3
    grep -q '^  replicas: 3$' <<<"$(doc "$WORK/rec-three.yaml" Deployment "$RECONCILER_NAME")" || fail "reconciler.replicaCount=3 is not rendered as 3 replicas"
    log "replicaCount 1: no PDB; 3: accepted"

    # Off (defaults): nothing of it, and no RBAC object or webhook at all.
    ! objects "$off" | awk -F'\t' -v n="$RECONCILER_NAME" -v r="$RECONCILER_ROLE" \
        '$4 == n || $4 == r || $5 ~ /templates\/reconciler-/ || $2 ~ /^(Cluster)?Role(Binding)?$/ || $2 ~ /WebhookConfiguration$/' | grep . >&2 ||
        fail "default values: reconciler, RBAC or webhook objects rendered"
    ! grep -n 'PERSYS_RECONCILER_\|app.kubernetes.io/component: reconciler$\|automountServiceAccountToken: true' "$off" >&2 ||
        fail "default values: reconciler settings or a mounted token rendered"
    log "defaults: no reconciler object, no ClusterRole, Role or binding, no webhook, no pod mounts a token"
}

# expect_reject WHAT NEEDLE [HELM ARGS...]: helm template must fail and its output name NEEDLE.
expect_reject() {
    local what=$1 needle=$2 out="$WORK/reject.txt"
    shift 2
    if t "$HELM" template "$RELEASE" "$CHART" "$@" >"$out" 2>&1; then
        fail "$what: helm template $* succeeded; the schema should reject it"
    fi
    if ! grep -qF -- "$needle" "$out"; then
        sed 's/^/    /' "$out" >&2
        fail "$what: helm failed but its output does not name '$needle'"
    fi
    log "rejected as expected ($what): $(grep -F -m1 -- "$needle" "$out" | sed 's/^[[:space:]]*//')"
}
# expect_accept WHAT [HELM ARGS...]
expect_accept() {
    local what=$1 out="$WORK/accept.txt"
    shift
    if ! t "$HELM" template "$RELEASE" "$CHART" "$@" >"$out" 2>&1; then
        sed 's/^/    /' "$out" >&2
        fail "$what: helm template $* failed; the schema should accept it"
    fi
    log "accepted as expected ($what)"
}

step_schema() {
    local schema="$CHART/values.schema.json" vals="$WORK/values.json" problems
    jq -e . "$schema" >/dev/null || fail "values.schema.json is not valid JSON"
    jq -e '."$schema" | test("draft-07")' "$schema" >/dev/null ||
        fail "values.schema.json must declare \$schema draft-07"

    # The chart's default values as JSON, through helm itself (no YAML tool needed; the schema
    # is checked by the walk below, which reports every problem at once).
    t "$HELM" install "$RELEASE" "$CHART" --dry-run=client --skip-schema-validation -o json >"$WORK/dry-run.json" 2>"$WORK/dry-run.err" ||
        { sed 's/^/    /' "$WORK/dry-run.err" >&2; fail "helm install --dry-run=client -o json"; }
    jq -e '.chart.values' "$WORK/dry-run.json" >"$vals" || fail "no .chart.values in helm's dry-run output"

    # Walk the schema along values.yaml: every key of values.yaml is described (or sits in a
    # free-form map), every described key is in values.yaml, every described key has a type,
    # and every object with fixed keys rejects others (additionalProperties: false).
    problems=$(jq -r --slurpfile vals "$vals" '
        def deref($root): if type == "object" and has("$ref")
            then (.["$ref"] | ltrimstr("#/") | split("/")) as $to | $root | getpath($to) else . end;
        def name($p): if $p == [] then "(top level)" else $p | join(".") end;
        def check($root; $s; $v; $p):
            ($s | deref($root)) as $r
            | (if ($r | has("type")) then empty else "no type: \(name($p))" end),
              (if ($r | has("properties")) then
                  (if $r.additionalProperties == false then empty
                   else "fixed keys but no additionalProperties false: \(name($p))" end),
                  (($v | if type == "object" then keys[] else empty end) as $k
                   | if ($r.properties | has($k)) then empty
                     else "in values.yaml, not in the schema: \(name($p + [$k]))" end),
                  (($r.properties | keys[]) as $k
                   | if ($v | type) == "object" and ($v | has($k)) then check($root; $r.properties[$k]; $v[$k]; $p + [$k])
                     elif $p == [] and $k == "global" then empty
                     else "in the schema, not in values.yaml: \(name($p + [$k]))" end)
               else empty end);
        . as $root | check($root; $root; $vals[0]; [])' "$schema") || fail "jq could not walk values.schema.json"
    [ -z "$problems" ] || fail "values.schema.json and values.yaml disagree:"$'\n'"      ${problems//$'\n'/$'\n'      }"
    log "$(jq '[paths(scalars, arrays)] | length' "$vals") values of values.yaml described and typed; objects with fixed keys closed"

    # Misspelt keys fail, naming the key; so do wrong types and values outside an enum.
    expect_reject "misspelt top-level key" gatewya --set gatewya.replicas=2
    expect_reject "misspelt nested key" replicaCont --set gateway.replicaCont=3
    printf 'scheduler:\n  agentService:\n    nodePorts:\n      grcp: 30743\n' >"$WORK/deep.yaml"
    expect_reject "misspelt key four levels down, from a values file" grcp -f "$WORK/deep.yaml"
    expect_reject "misspelt key under the all-on values" issuerRefs -f "$ALL_ON" --set tls.certManager.issuerRefs.name=x
    expect_reject "string for an integer" replicaCount --set gateway.replicaCount=two
    expect_reject "value outside an enum" strategy --set scheduler.strategy=random
    # A host command is an absolute path or a bare name; a relative path would resolve
    # against the agent's working directory.
    expect_reject "relative path in agent.hostCommands" hostCommands --set 'agent.hostCommands={bin/sh}'
    # Free-form maps stay open.
    expect_accept "free-form maps" --set gateway.podAnnotations.anything=x \
        --set scheduler.nodeSelector.disk=ssd --set analyzer.resources.requests.ephemeral-storage=1Gi \
        --set 'agent.hostCommands={uptime,/usr/bin/df}' \
        --set-json 'podSecurityContext={"runAsUser":10001,"supplementalGroups":[5]}'
}

need_cluster() {
    if [ -z "$KCFG" ]; then
        [ "${CI:-}" = true ] && fail "PERSYS_TEST_KUBECONFIG is not set (needed under CI=true)"
        skip "PERSYS_TEST_KUBECONFIG is not set: no API server to install into"
    fi
    [ -r "$KCFG" ] || fail "PERSYS_TEST_KUBECONFIG=$KCFG is not readable"
}

step_cluster() {
    local v
    need_cluster
    v=$(kc version -o json 2>&1) || fail "kubectl ($KUBECTL) cannot reach the API server: $v"
    log "API server $(printf '%s' "$v" | jq -r '.serverVersion.gitVersion // "?"')"
    # Leftovers of an interrupted run.
    delete_releases || fail "could not remove the releases or namespaces of an earlier run"
}

step_crds() {
    local f names=()
    need_cluster
    for f in "$CRD_DIR"/*.yaml; do
        kc apply -f "$f" >&2 || fail "kubectl apply -f $f"
        names+=("crd/$(awk '/^metadata:/ { m = 1; next } m && /^  name:/ { print $2; exit }' "$f")")
    done
    kc wait --for=condition=Established --timeout=60s "${names[@]}" >&2 ||
        fail "stand-in CRDs not Established within 60s: ${names[*]}"
    # The chart's own CRDs (crds/), applied the way the other tests share them: server-side
    # apply under the field manager persys-tests. helm install then finds them and skips them,
    # so no test's apply ever conflicts with fields Helm would own.
    [ -d "$CHART/crds" ] || { log "the chart has no crds/"; return 0; }
    names=()
    for f in "$CHART"/crds/*.yaml; do
        kc apply --server-side --force-conflicts --field-manager=persys-tests -f "$f" >&2 ||
            fail "kubectl apply --server-side -f ${f#"$REPO_ROOT"/}"
    done
    while IFS= read -r f; do
        [ -n "$f" ] && names+=("crd/$f")
    done < <(cat "$CHART"/crds/*.yaml | objects /dev/stdin | awk -F'\t' '$2 == "CustomResourceDefinition" { print $4 }')
    [ "${#names[@]}" -gt 0 ] || fail "the chart's crds/ holds no CustomResourceDefinition"
    kc wait --for=condition=Established --timeout=60s "${names[@]}" >&2 ||
        fail "the chart's CRDs not Established within 60s: ${names[*]}"
    log "the chart's CRDs applied and Established: ${names[*]}"
}

# install NAME NAMESPACE [HELM ARGS...]
install() {
    local name=$1 ns=$2 out="$WORK/install-$1.txt" objs="$WORK/installed-$1.objects"
    local api kind ons oname res found=0 missing=() crds=()
    shift 2
    need_cluster
    if ! hc install "$RELEASE" "$CHART" -n "$ns" --create-namespace --timeout 90s "$@" >"$out" 2>&1; then
        sed 's/^/    /' "$out" >&2
        fail "helm install $RELEASE -n $ns $*"
    fi
    grep -E '^(NAME|NAMESPACE|STATUS|REVISION):' "$out" | sed 's/^/    /' >&2 || true

    hc get manifest "$RELEASE" -n "$ns" >"$WORK/manifest-$name.yaml" || fail "helm get manifest -n $ns"
    objects "$WORK/manifest-$name.yaml" "$ns" >"$objs"
    ! grep -q '^ERROR' "$objs" || fail "helm get manifest lists documents without apiVersion, kind or name"
    [ -s "$objs" ] || fail "helm get manifest lists no object"
    while IFS=$'\t' read -r api kind ons oname _; do
        if [[ "$api" == */* ]]; then
            res="${kind,,}.${api#*/}.${api%%/*}"
        else
            res="${kind,,}"
        fi
        if [ "$kind" = CustomResourceDefinition ]; then
            crds+=("crd/$oname")
            kc get "$res" "$oname" -o name >/dev/null 2>"$WORK/get.err" || missing+=("$kind/$oname")
        elif kc get "$res" "$oname" -n "$ons" -o name >/dev/null 2>"$WORK/get.err"; then
            found=$((found + 1))
        else
            missing+=("$kind/$ons/$oname ($(tr '\n' ' ' <"$WORK/get.err"))")
        fi
    done <"$objs"
    [ "${#missing[@]}" -eq 0 ] || fail "objects of the release missing from the cluster: ${missing[*]}"
    log "all $found objects of the release exist in namespace $ns:"
    cut -f2 "$objs" | sort | uniq -c | sed 's/^/    /' >&2

    # CRDs the chart ships (crds/ or templates) must be Established.
    while IFS= read -r oname; do
        [ -n "$oname" ] && crds+=("crd/$oname")
    done < <(hc show crds "$CHART" 2>/dev/null | objects /dev/stdin | awk -F'\t' '$2 == "CustomResourceDefinition" { print $4 }')
    if [ "${#crds[@]}" -gt 0 ]; then
        kc wait --for=condition=Established --timeout=60s "${crds[@]}" >&2 ||
            fail "CRDs of the chart not Established: ${crds[*]}"
        log "CRDs of the chart Established: ${crds[*]}"
    else
        log "the chart ships no CRD"
    fi

    # helm prints a "NOTES:" heading of its own even when NOTES.txt renders nothing.
    hc get notes "$RELEASE" -n "$ns" >"$WORK/notes-$name.txt" || fail "helm get notes -n $ns"
    sed '1{/^NOTES:[[:space:]]*$/d}' "$WORK/notes-$name.txt" >"$WORK/notes-$name.body"
    grep -q '[^[:space:]]' "$WORK/notes-$name.body" || fail "helm get notes -n $ns is empty"
    log "NOTES: $(grep -c '' "$WORK/notes-$name.body") lines, starting: $(grep -m1 '[^[:space:]]' "$WORK/notes-$name.body")"
}
step_install_default() { install default "$NS_DEFAULT"; }
step_install_all_on() { install all-on "$NS_ALL" -f "$ALL_ON"; }

# kenv KIND NAME NS FILTER: jq FILTER over the env list of the first container of KIND/NAME in
# NS, as read back from the API server.
kenv() {
    kc get "$1" "$2" -n "$3" -o json >"$WORK/obj.json" || return 1
    jq -r "(.spec.template.spec.containers[0].env // []) | $4" "$WORK/obj.json"
}
step_metrics_cluster() {
    local v
    need_cluster
    # persys-all: the component as the API server stored it.
    kc get deployment,service,serviceaccount,poddisruptionbudget,networkpolicy "$METRICS_NAME" -n "$NS_ALL" -o name >&2 ||
        fail "the metrics objects are not in $NS_ALL"
    v=$(kenv deployment "$METRICS_NAME" "$NS_ALL" \
        '.[] | select(.name == "PERSYS_METRICS_DATABASE_URL") | select(has("value") | not) | .valueFrom.secretKeyRef | "\(.name)/\(.key)"') ||
        fail "kubectl get deployment $METRICS_NAME -n $NS_ALL"
    [ "$v" = "$METRICS_DB_SECRET/$METRICS_DB_KEY" ] ||
        fail "deployment/$METRICS_NAME in $NS_ALL: PERSYS_METRICS_DATABASE_URL from '$v', not Secret $METRICS_DB_SECRET/$METRICS_DB_KEY"
    v=$(kenv deployment "$RELEASE-gateway" "$NS_ALL" '.[] | select(.name == "PERSYS_GATEWAY_UPSTREAMS") | .value') ||
        fail "kubectl get deployment $RELEASE-gateway -n $NS_ALL"
    tr ',' '\n' <<<"$v" | grep -qx "metrics=$METRICS_URL" || fail "gateway in $NS_ALL: upstreams '$v' lack metrics=$METRICS_URL"
    v=$(kenv daemonset "$RELEASE-agent" "$NS_ALL" '.[] | select(.name == "PERSYS_AGENT_METRICS_PIPELINE") | .value') ||
        fail "kubectl get daemonset $RELEASE-agent -n $NS_ALL"
    [ "$v" = "$METRICS_URL" ] || fail "daemonset/$RELEASE-agent in $NS_ALL: PERSYS_AGENT_METRICS_PIPELINE is '$v', not $METRICS_URL"
    log "$NS_ALL: deployment/$METRICS_NAME reads its database URL from secret $METRICS_DB_SECRET; gateway and agents point at $METRICS_URL"
    # persys-default: nothing of it.
    v=$(kc get deployment,service,networkpolicy -n "$NS_DEFAULT" -l app.kubernetes.io/component=metrics -o name) ||
        fail "kubectl get -n $NS_DEFAULT -l app.kubernetes.io/component=metrics"
    [ -z "$v" ] || fail "$NS_DEFAULT (defaults) has metrics objects: $v"
    v=$(kenv deployment "$RELEASE-gateway" "$NS_DEFAULT" '.[] | select(.name == "PERSYS_GATEWAY_UPSTREAMS") | .value') ||
        fail "kubectl get deployment $RELEASE-gateway -n $NS_DEFAULT"
    ! tr ',' '\n' <<<"$v" | grep -q '^metrics=' || fail "gateway in $NS_DEFAULT: upstreams '$v' name metrics"
    log "$NS_DEFAULT: no metrics object, the gateway's upstreams are '$v'"
}

# can_i WANT VERB RESOURCE [ARGS...]: as the reconciler's ServiceAccount, `kubectl auth can-i`
# must answer WANT (yes or no); anything else (an error) fails too. Sets CAN_I_FAILED and
# counts the questions in CAN_I_ASKED_yes / CAN_I_ASKED_no.
can_i() {
    local want=$1 got
    shift
    case "$want" in
        yes) CAN_I_ASKED_yes=$((CAN_I_ASKED_yes + 1)) ;;
        no) CAN_I_ASKED_no=$((CAN_I_ASKED_no + 1)) ;;
        *) fail "can_i: WANT is yes or no, not '$want'" ;;
    esac
    got=$(kc auth can-i --as="$RECONCILER_SA" "$@" 2>"$WORK/can-i.err") || true
    if [ "$got" != "$want" ]; then
        log "  can-i $*: '$got', expected $want $(tr '\n' ' ' <"$WORK/can-i.err")"
        CAN_I_FAILED=1
    fi
}
# rules_of USER NS: what `kubectl auth can-i --list` grants USER in NS, in the form of
# RECONCILER_RULES (resources split, one verb a line), sorted.
rules_of() {
    kc auth can-i --list --as="$1" -n "$2" | awk '
        NR == 1 && /^Resources/ { next }
        {
            # Columns: resources ("a.g, b.g" may have spaces), [urls] [names] [verbs].
            if (!match($0, /\[[^]]*\][[:space:]]+\[[^]]*\][[:space:]]+\[[^]]*\][[:space:]]*$/)) { print "UNPARSED " $0; next }
            res = substr($0, 1, RSTART - 1); tail = substr($0, RSTART)
            gsub(/[[:space:]]+$/, "", res)
            n = split(tail, cols, /\][[:space:]]+\[/)
            urls = cols[1]; sub(/^\[/, "", urls); names = cols[2]; verbs = cols[3]; sub(/\][[:space:]]*$/, "", verbs)
            if (res == "") { for (i = 1; i <= split(urls, u, " "); i++) for (j = 1; j <= split(verbs, v, " "); j++) print "url:" u[i] " " v[j]; next }
            if (names != "") res = res "[" names "]"
            nr = split(res, r, /,[[:space:]]*/)
            for (i = 1; i <= nr; i++) for (j = 1; j <= split(verbs, v, " "); j++) print r[i] " " v[j]
        }' | sort -u
}

step_reconciler_cluster() {
    local v got base want crd persona=persys-helm-check
    need_cluster
    # The chart's CRD: shipped in crds/ and Established, with the status subresource the
    # reconciler patches.
    crd=applicationpersonas.dorgu.io
    hc show crds "$CHART" >"$WORK/chart-crds.yaml" || fail "helm show crds"
    objects "$WORK/chart-crds.yaml" | awk -F'\t' '$2 == "CustomResourceDefinition" { print $4 }' | grep -qx "$crd" ||
        fail "the chart's crds/ has no CustomResourceDefinition $crd"
    kc wait --for=condition=Established --timeout=60s "crd/$crd" >&2 || fail "crd/$crd is not Established"
    kc get crd "$crd" -o json --show-managed-fields >"$WORK/crd.json" || fail "kubectl get crd $crd"
    jq -e '.spec.versions[] | select(.name == "v1" and .served and .storage) | .subresources.status' "$WORK/crd.json" >/dev/null ||
        fail "crd/$crd: no served storage version v1 with a status subresource"
    log "crd/$crd (from the chart's crds/) Established, v1 with a status subresource; field managers: $(jq -r '[.metadata.managedFields[]?.manager] | unique | join(", ")' "$WORK/crd.json")"

    # The ClusterRole and its binding as the API server stored them.
    kc get clusterrole "$RECONCILER_ROLE" -o json >"$WORK/role.json" || fail "no ClusterRole $RECONCILER_ROLE"
    got=$(jq -r '.rules[] | (.resources[] | split("/")) as $r | .apiGroups[] as $g | .verbs[] as $v
        | "\($r[0])\(if $g == "" then "" else "." + $g end)\(if ($r | length) > 1 then "/" + $r[1] else "" end) \($v)"' "$WORK/role.json" | sort)
    [ "$got" = "$RECONCILER_RULES" ] ||
        fail "ClusterRole $RECONCILER_ROLE in the API server grants"$'\n'"$(sed 's/^/      /' <<<"$got")"$'\n'"    instead of exactly"$'\n'"$(sed 's/^/      /' <<<"$RECONCILER_RULES")"
    jq -e '(.aggregationRule == null) and ([.rules[] | select(.resourceNames or .nonResourceURLs)] | length == 0)' "$WORK/role.json" >/dev/null ||
        fail "ClusterRole $RECONCILER_ROLE has resourceNames, nonResourceURLs or an aggregationRule"
    v=$(kc get clusterrolebinding "$RECONCILER_ROLE" -o json | jq -r '"\(.roleRef.kind)/\(.roleRef.name) -> \([.subjects[] | "\(.kind)/\(.namespace)/\(.name)"] | join(","))"') ||
        fail "no ClusterRoleBinding $RECONCILER_ROLE"
    [ "$v" = "ClusterRole/$RECONCILER_ROLE -> ServiceAccount/$NS_ALL/$RECONCILER_NAME" ] ||
        fail "ClusterRoleBinding $RECONCILER_ROLE: $v"
    kc get deployment,serviceaccount,service,networkpolicy "$RECONCILER_NAME" -n "$NS_ALL" -o name >&2 ||
        fail "the reconciler's objects are not in $NS_ALL"
    log "ClusterRole $RECONCILER_ROLE: exactly the $(wc -l <<<"$RECONCILER_RULES") expected rules, bound to ServiceAccount $NS_ALL/$RECONCILER_NAME only"
    # The leader-election Role and its binding, in the release namespace.
    kc get role "$LEADER_ROLE" -n "$NS_ALL" -o json >"$WORK/lrole.json" || fail "no Role $NS_ALL/$LEADER_ROLE"
    got=$(jq -r '.rules[] | .resources[] as $r | .apiGroups[] as $g | .verbs[] as $v | (.resourceNames // [""])[] as $n
        | "\($r)\(if $g == "" then "" else "." + $g end)\(if $n == "" then "" else "[" + $n + "]" end) \($v)"' "$WORK/lrole.json" | sort)
    [ "$got" = "$LEASE_RULES" ] ||
        fail "Role $NS_ALL/$LEADER_ROLE in the API server grants"$'\n'"$(sed 's/^/      /' <<<"$got")"$'\n'"    instead of exactly"$'\n'"$(sed 's/^/      /' <<<"$LEASE_RULES")"
    v=$(kc get rolebinding "$LEADER_ROLE" -n "$NS_ALL" -o json | jq -r '"\(.roleRef.kind)/\(.roleRef.name) -> \([.subjects[] | "\(.kind)/\(.namespace)/\(.name)"] | join(","))"') ||
        fail "no RoleBinding $NS_ALL/$LEADER_ROLE"
    [ "$v" = "Role/$LEADER_ROLE -> ServiceAccount/$NS_ALL/$RECONCILER_NAME" ] || fail "RoleBinding $NS_ALL/$LEADER_ROLE: $v"
    log "Role $NS_ALL/$LEADER_ROLE: exactly create leases, get/update lease $LEASE_NAME; bound to the same ServiceAccount only"

    # What the API server lets the ServiceAccount do, asked as it (impersonation).
    CAN_I_FAILED=0 CAN_I_ASKED_yes=0 CAN_I_ASKED_no=0
    can_i yes list applicationpersonas.dorgu.io -A
    can_i yes watch applicationpersonas.dorgu.io -A
    can_i yes patch applicationpersonas.dorgu.io --subresource=status -A
    can_i yes list deployments.apps -A
    can_i yes watch deployments.apps -A
    can_i yes list statefulsets.apps -A
    can_i yes watch statefulsets.apps -A
    can_i yes list pods -A
    can_i no get applicationpersonas.dorgu.io -A
    can_i no update applicationpersonas.dorgu.io -A
    can_i no patch applicationpersonas.dorgu.io -A
    can_i no create applicationpersonas.dorgu.io -A
    can_i no delete applicationpersonas.dorgu.io -A
    can_i no update applicationpersonas.dorgu.io --subresource=status -A
    # ClusterPersona discovery (its own ClusterRole): follow nodes, list namespaces, create
    # and reconcile ClusterPersonas; nothing that changes nodes or deletes personas.
    can_i yes list clusterpersonas.dorgu.io
    can_i yes watch clusterpersonas.dorgu.io
    can_i yes create clusterpersonas.dorgu.io
    can_i yes patch clusterpersonas.dorgu.io --subresource=status
    can_i no update clusterpersonas.dorgu.io
    can_i no delete clusterpersonas.dorgu.io
    can_i yes list nodes
    can_i yes watch nodes
    can_i no get nodes
    can_i no patch nodes
    can_i no delete nodes
    can_i no get deployments.apps -A
    can_i no patch deployments.apps -A
    can_i no update deployments.apps -A
    can_i no delete deployments.apps -A
    can_i no create deployments.apps -A
    can_i no patch deployments.apps --subresource=scale -A
    can_i no delete statefulsets.apps -A
    can_i no get pods -A
    can_i no watch pods -A
    can_i no create pods -A
    can_i no delete pods -A
    can_i no get secrets -A
    can_i no list secrets -A
    # Registries (their own ClusterRole), and Secrets of the credentials namespace only.
    can_i yes list registries.kapsa-project.io
    can_i yes watch registries.kapsa-project.io
    can_i yes patch registries.kapsa-project.io --subresource=status
    can_i no update registries.kapsa-project.io
    can_i no delete registries.kapsa-project.io
    can_i yes get secrets -n "$NS_ALL"
    can_i yes watch secrets -n "$NS_ALL"
    can_i no create secrets -n "$NS_ALL"
    can_i no update secrets -n "$NS_ALL"
    can_i no get secrets -n default
    can_i no get secrets -n kube-system
    can_i yes watch applications.argoproj.io -A
    can_i no patch applications.argoproj.io -A
    can_i no delete applications.argoproj.io -A
    can_i no get configmaps -A
    can_i no create events -A
    can_i no create events.events.k8s.io -A
    can_i no create leases.coordination.k8s.io -A
    # Leader election: its Lease in the release namespace, nothing more.
    can_i yes create leases.coordination.k8s.io -n "$NS_ALL"
    can_i yes get "leases.coordination.k8s.io/$LEASE_NAME" -n "$NS_ALL"
    can_i yes update "leases.coordination.k8s.io/$LEASE_NAME" -n "$NS_ALL"
    can_i no delete "leases.coordination.k8s.io/$LEASE_NAME" -n "$NS_ALL"
    can_i no patch "leases.coordination.k8s.io/$LEASE_NAME" -n "$NS_ALL"
    can_i no get leases.coordination.k8s.io/another-lease -n "$NS_ALL"
    can_i no update leases.coordination.k8s.io/another-lease -n "$NS_ALL"
    can_i no list leases.coordination.k8s.io -n "$NS_ALL"
    can_i no watch leases.coordination.k8s.io -n "$NS_ALL"
    can_i no create leases.coordination.k8s.io -n default
    can_i no get "leases.coordination.k8s.io/$LEASE_NAME" -n default
    can_i no update "leases.coordination.k8s.io/$LEASE_NAME" -n default
    can_i no create leases.coordination.k8s.io -n kube-system
    # Namespaces' labels and annotations are read (the webhook's mode label, members), nothing
    # more of them.
    can_i yes get namespaces -A
    can_i yes list namespaces -A
    can_i yes watch namespaces -A
    can_i no update namespaces -A
    can_i no patch namespaces -A
    can_i no delete namespaces -A
    can_i no list customresourcedefinitions.apiextensions.k8s.io
    can_i no create clusterrolebindings.rbac.authorization.k8s.io
    can_i no '*' '*' -A
    [ "$CAN_I_FAILED" = 0 ] || fail "the reconciler's ServiceAccount may do more or less than the code needs (see above)"
    log "kubectl auth can-i as $RECONCILER_SA: $CAN_I_ASKED_yes calls allowed, $CAN_I_ASKED_no others refused, as expected"

    # Everything it may do beyond an account of the same namespace without bindings: exactly
    # the expected rules, in its own namespace and in any other.
    for v in "$NS_ALL" default; do
        base=$(rules_of "system:serviceaccount:$NS_ALL:persys-helm-check-nobody" "$v") || fail "kubectl auth can-i --list (no bindings) -n $v"
        got=$(rules_of "$RECONCILER_SA" "$v") || fail "kubectl auth can-i --list as the reconciler -n $v"
        ! grep -q UNPARSED <<<"$base$got" || fail "kubectl auth can-i --list printed lines this check cannot read:"$'\n'"$(grep UNPARSED <<<"$base$got")"
        got=$(comm -13 <(printf '%s\n' "$base") <(printf '%s\n' "$got"))
        # The Lease rules hold in the release namespace only.
        want=$(sort -u <<<"$RECONCILER_RULES"$'\n'"$DISCOVERY_RULES"$'\n'"$REGISTRY_RULES")
        if [ "$v" = "$NS_ALL" ]; then want=$(sort -u <<<"$want"$'\n'"$LEASE_RULES"$'\n'"$CREDENTIALS_RULES"); fi
        [ "$got" = "$want" ] ||
            fail "in namespace $v, can-i --list grants the reconciler beyond a bare account"$'\n'"$(sed 's/^/      /' <<<"$got")"$'\n'"    instead of exactly"$'\n'"$(sed 's/^/      /' <<<"$want")"
    done
    log "kubectl auth can-i --list in $NS_ALL and default: exactly those rules beyond an account without bindings (the Lease and registry-credential rules in $NS_ALL only)"

    # Real calls as the ServiceAccount: its lists, and the status write the controller makes
    # (server-side apply of the status subresource) on a persona the admin creates.
    for v in applicationpersonas.dorgu.io deployments.apps statefulsets.apps pods; do
        kc get "$v" -A --as="$RECONCILER_SA" -o name >/dev/null 2>"$WORK/as.err" ||
            fail "as the reconciler, kubectl get $v -A: $(tr '\n' ' ' <"$WORK/as.err")"
    done
    printf 'apiVersion: dorgu.io/v1\nkind: ApplicationPersona\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  name: %s\n' \
        "$persona" "$NS_ALL" "$persona" >"$WORK/persona.yaml"
    kc apply --server-side --field-manager=persys-helm-check -f "$WORK/persona.yaml" >&2 || fail "creating applicationpersona $NS_ALL/$persona"
    printf 'apiVersion: dorgu.io/v1\nkind: ApplicationPersona\nmetadata:\n  name: %s\n  namespace: %s\nstatus:\n  phase: Pending\n' \
        "$persona" "$NS_ALL" >"$WORK/persona-status.yaml"
    kc apply --server-side --subresource=status --field-manager=persys-helm-check-reconciler --as="$RECONCILER_SA" \
        -f "$WORK/persona-status.yaml" >&2 2>"$WORK/as.err" ||
        fail "as the reconciler, server-side apply of applicationpersona $NS_ALL/$persona status: $(tr '\n' ' ' <"$WORK/as.err")"
    v=$(kc get applicationpersona "$persona" -n "$NS_ALL" -o jsonpath='{.status.phase}') || fail "kubectl get applicationpersona $persona"
    [ "$v" = Pending ] || fail "applicationpersona $NS_ALL/$persona: status.phase is '$v' after the reconciler's apply, not Pending"
    if kc apply --server-side --field-manager=persys-helm-check-reconciler --as="$RECONCILER_SA" -f "$WORK/persona.yaml" >/dev/null 2>"$WORK/as.err"; then
        fail "as the reconciler, applying the persona itself (not its status) succeeded"
    fi
    grep -q Forbidden "$WORK/as.err" || fail "as the reconciler, applying the persona failed, but not as Forbidden: $(tr '\n' ' ' <"$WORK/as.err")"
    # Secrets: those of the registry credentials namespace (the release namespace) only.
    kc get secrets -n "$NS_ALL" --as="$RECONCILER_SA" -o name >/dev/null 2>"$WORK/as.err" ||
        fail "as the reconciler, kubectl get secrets -n $NS_ALL (its registry credentials namespace): $(tr '\n' ' ' <"$WORK/as.err")"
    if kc get secrets -n "$NS_DEFAULT" --as="$RECONCILER_SA" -o name >/dev/null 2>"$WORK/as.err"; then
        fail "as the reconciler, kubectl get secrets -n $NS_DEFAULT succeeded"
    fi
    grep -q Forbidden "$WORK/as.err" || fail "as the reconciler, kubectl get secrets failed, but not as Forbidden: $(tr '\n' ' ' <"$WORK/as.err")"
    log "as the reconciler: lists of personas, Deployments, StatefulSets and pods work; its status apply wrote phase Pending; applying the persona itself and reading Secrets outside $NS_ALL are Forbidden"

    # Leader election for real, as the ServiceAccount: create its Lease in the release namespace,
    # read it, take it over by an update carrying the resourceVersion read (as the code does);
    # deleting it, creating one elsewhere and reading another are Forbidden.
    printf 'apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n  holderIdentity: persys-helm-check-a\n  leaseDurationSeconds: 10\n' \
        "$LEASE_NAME" "$NS_ALL" >"$WORK/lease.yaml"
    kc create -f "$WORK/lease.yaml" --as="$RECONCILER_SA" >&2 2>"$WORK/as.err" ||
        fail "as the reconciler, creating lease $NS_ALL/$LEASE_NAME: $(tr '\n' ' ' <"$WORK/as.err")"
    kc get lease "$LEASE_NAME" -n "$NS_ALL" --as="$RECONCILER_SA" -o json >"$WORK/lease.json" 2>"$WORK/as.err" ||
        fail "as the reconciler, reading lease $NS_ALL/$LEASE_NAME: $(tr '\n' ' ' <"$WORK/as.err")"
    jq -e '.metadata.resourceVersion' "$WORK/lease.json" >/dev/null || fail "lease $NS_ALL/$LEASE_NAME has no resourceVersion"
    jq '.spec.holderIdentity = "persys-helm-check-b" | .spec.leaseTransitions = 1' "$WORK/lease.json" |
        kc replace -f - --as="$RECONCILER_SA" >&2 2>"$WORK/as.err" ||
        fail "as the reconciler, updating lease $NS_ALL/$LEASE_NAME: $(tr '\n' ' ' <"$WORK/as.err")"
    v=$(kc get lease "$LEASE_NAME" -n "$NS_ALL" -o jsonpath='{.spec.holderIdentity}') || fail "kubectl get lease $LEASE_NAME"
    [ "$v" = persys-helm-check-b ] || fail "lease $NS_ALL/$LEASE_NAME: holder is '$v' after the reconciler's update"
    # forbidden WHAT CMD...: CMD (as the reconciler) must fail as Forbidden.
    forbidden() {
        local what=$1
        shift
        if "$@" >/dev/null 2>"$WORK/as.err"; then fail "as the reconciler, $what succeeded"; fi
        grep -q Forbidden "$WORK/as.err" || fail "as the reconciler, $what failed, but not as Forbidden: $(tr '\n' ' ' <"$WORK/as.err")"
    }
    forbidden "deleting lease $NS_ALL/$LEASE_NAME" kc delete lease "$LEASE_NAME" -n "$NS_ALL" --as="$RECONCILER_SA"
    sed "s/namespace: $NS_ALL\$/namespace: $NS_DEFAULT/" "$WORK/lease.yaml" >"$WORK/lease-elsewhere.yaml"
    forbidden "creating lease $NS_DEFAULT/$LEASE_NAME" kc create -f "$WORK/lease-elsewhere.yaml" --as="$RECONCILER_SA"
    printf 'apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: persys-helm-check-other\n  namespace: %s\n' "$NS_ALL" | kc create -f - >/dev/null ||
        fail "creating lease $NS_ALL/persys-helm-check-other as admin"
    forbidden "reading lease $NS_ALL/persys-helm-check-other" kc get lease persys-helm-check-other -n "$NS_ALL" --as="$RECONCILER_SA"
    kc delete lease "$LEASE_NAME" persys-helm-check-other -n "$NS_ALL" >/dev/null || fail "deleting the test leases as admin"
    log "as the reconciler: lease $NS_ALL/$LEASE_NAME created, read and updated (resourceVersion); deleting it, creating one in $NS_DEFAULT and reading another are Forbidden"

    # persys-default (defaults): nothing of it, and its accounts have none of those rights.
    ! kc get validatingwebhookconfiguration "$NS_DEFAULT-$RECONCILER_NAME" -o name >/dev/null 2>&1 ||
        fail "$NS_DEFAULT (defaults) registered ValidatingWebhookConfiguration $NS_DEFAULT-$RECONCILER_NAME"
    v=$(kc get deployment,service,serviceaccount,networkpolicy,poddisruptionbudget,role,rolebinding -n "$NS_DEFAULT" -l app.kubernetes.io/component=reconciler -o name) ||
        fail "kubectl get -n $NS_DEFAULT -l app.kubernetes.io/component=reconciler"
    [ -z "$v" ] || fail "$NS_DEFAULT (defaults) has reconciler objects: $v"
    ! kc get clusterrole "$NS_DEFAULT-$RECONCILER_NAME" -o name >/dev/null 2>&1 || fail "$NS_DEFAULT (defaults) made ClusterRole $NS_DEFAULT-$RECONCILER_NAME"
    v=$(kc auth can-i --as="system:serviceaccount:$NS_DEFAULT:$RECONCILER_NAME" patch applicationpersonas.dorgu.io --subresource=status -A 2>/dev/null) || true
    [ "$v" = no ] || fail "ServiceAccount $NS_DEFAULT/$RECONCILER_NAME may patch persona statuses: '$v'"
    log "$NS_DEFAULT: no reconciler object, ClusterRole or rights"
}

# dry_deploy NAME NS: a server-side dry-run create of a Deployment (admission webhooks with
# sideEffects None are consulted; nothing is stored). Output and errors in $WORK/dry.out.
dry_deploy() {
    kc create deployment "$1" -n "$2" --image=registry.example.com/persys-helm-check:1 --dry-run=server -o name >"$WORK/dry.out" 2>&1
}
# set_failure_policy POLICY: patch the webhook registration's failurePolicy (test only).
set_failure_policy() {
    kc patch validatingwebhookconfiguration "$WEBHOOK_CONFIG" --type=json \
        -p "[{\"op\": \"replace\", \"path\": \"/webhooks/0/failurePolicy\", \"value\": \"$1\"}]" >&2
}

# The webhook registration in the real API server, and proof that the API server consults it
# where (and only where) it should. Its Service has no endpoints here (no kubelet), so a call
# always fails: with Ignore it is admitted, with Fail refused, which tells when it was called.
step_reconciler_webhook() {
    local v i refused
    need_cluster
    kc get validatingwebhookconfiguration "$WEBHOOK_CONFIG" -o json >"$WORK/vwc.json" ||
        fail "no ValidatingWebhookConfiguration $WEBHOOK_CONFIG in the API server"
    v=$(jq -r --arg name "$WEBHOOK_NAME" --arg svc "$RECONCILER_NAME" --arg ns "$NS_ALL" --arg lbl "$WEBHOOK_LABEL" \
        --arg cert "$NS_ALL/$WEBHOOK_CERT" '
        def want($ok; $what): if $ok then empty else $what end;
        (.webhooks | length) as $n | .webhooks[0] as $w
        | want($n == 1; "\($n) webhooks, not 1"),
          want($w.name == $name; "webhook name \($w.name)"),
          want($w.failurePolicy == "Ignore"; "failurePolicy \($w.failurePolicy)"),
          want($w.sideEffects == "None"; "sideEffects \($w.sideEffects)"),
          want($w.timeoutSeconds == 3; "timeoutSeconds \($w.timeoutSeconds)"),
          want($w.admissionReviewVersions == ["v1"]; "admissionReviewVersions \($w.admissionReviewVersions)"),
          want($w.clientConfig.service == {namespace: $ns, name: $svc, path: "/validate", port: 443}; "clientConfig.service \($w.clientConfig.service)"),
          want(($w.rules | length) == 1 and $w.rules[0].apiGroups == ["apps"] and $w.rules[0].apiVersions == ["v1"]
               and ($w.rules[0].resources | sort) == ["deployments", "statefulsets"] and ($w.rules[0].operations | sort) == ["CREATE", "UPDATE"];
               "rules \($w.rules)"),
          want($w.namespaceSelector.matchLabels[$lbl] == "on"; "namespaceSelector without matchLabels \($lbl)=on"),
          want(any($w.namespaceSelector.matchExpressions[]; .key == "kubernetes.io/metadata.name" and .operator == "NotIn" and .values == [$ns]);
               "namespaceSelector does not exclude \($ns)"),
          want(.metadata.annotations["cert-manager.io/inject-ca-from"] == $cert; "no cert-manager.io/inject-ca-from: \($cert)")' "$WORK/vwc.json") ||
        fail "jq over ValidatingWebhookConfiguration $WEBHOOK_CONFIG"
    [ -z "$v" ] || fail "ValidatingWebhookConfiguration $WEBHOOK_CONFIG as stored:"$'\n'"$(sed 's/^/      /' <<<"$v")"
    kc get certificate.cert-manager.io "$WEBHOOK_CERT" -n "$NS_ALL" -o name >/dev/null || fail "no Certificate $NS_ALL/$WEBHOOK_CERT"
    log "ValidatingWebhookConfiguration $WEBHOOK_CONFIG stored as rendered ($WEBHOOK_NAME, Ignore, apps/v1 deployments+statefulsets CREATE/UPDATE, service $NS_ALL/$RECONCILER_NAME:443/validate, label $WEBHOOK_LABEL=on, not $NS_ALL), Certificate $WEBHOOK_CERT"

    # A namespace the webhook selects (the check's label), and the release namespace labelled the
    # same way: the chart's exclusion of the release namespace must still keep it out.
    kc create namespace "$WEBHOOK_NS" >&2 || fail "kubectl create namespace $WEBHOOK_NS"
    kc label namespace "$WEBHOOK_NS" "$WEBHOOK_LABEL=on" >&2 || fail "labelling namespace $WEBHOOK_NS"
    kc label namespace "$NS_ALL" "$WEBHOOK_LABEL=on" --overwrite >&2 || fail "labelling namespace $NS_ALL"
    # Ignore (as installed): the unreachable webhook does not stop anything.
    dry_deploy persys-helm-check "$WEBHOOK_NS" ||
        fail "failurePolicy Ignore: a Deployment in $WEBHOOK_NS was refused: $(tr '\n' ' ' <"$WORK/dry.out")"
    # Fail (for this test only): now the call's failure shows. The API server picks the change up
    # within moments; wait for it.
    set_failure_policy Fail || fail "patching $WEBHOOK_CONFIG to failurePolicy Fail"
    refused=0
    for i in $(seq 1 30); do
        if ! dry_deploy persys-helm-check "$WEBHOOK_NS"; then refused=1; break; fi
        sleep 0.5
    done
    if [ "$refused" = 0 ]; then set_failure_policy Ignore || true; fail "failurePolicy Fail: a Deployment in $WEBHOOK_NS was still admitted after 15s: the API server does not consult the webhook"; fi
    if ! grep -q "failed calling webhook \"$WEBHOOK_NAME\"" "$WORK/dry.out"; then
        set_failure_policy Ignore || true
        fail "failurePolicy Fail: the refusal in $WEBHOOK_NS does not come from webhook $WEBHOOK_NAME: $(tr '\n' ' ' <"$WORK/dry.out")"
    fi
    log "failurePolicy Fail: a Deployment in $WEBHOOK_NS is refused: $(grep -o "failed calling webhook \"$WEBHOOK_NAME\"[^:]*" "$WORK/dry.out" | head -1)"
    for v in "$NS_ALL" "$NS_DEFAULT"; do
        if ! dry_deploy persys-helm-check "$v"; then
            set_failure_policy Ignore || true
            fail "failurePolicy Fail: a Deployment in $v (not selected) was refused: $(tr '\n' ' ' <"$WORK/dry.out")"
        fi
    done
    log "failurePolicy Fail: Deployments in $NS_ALL (the release namespace, even labelled) and $NS_DEFAULT (unlabelled) are admitted: the webhook is not consulted there"
    # Back to Ignore, as the chart installed it: admitted again.
    set_failure_policy Ignore || fail "patching $WEBHOOK_CONFIG back to failurePolicy Ignore"
    refused=1
    for i in $(seq 1 30); do
        if dry_deploy persys-helm-check "$WEBHOOK_NS"; then refused=0; break; fi
        sleep 0.5
    done
    [ "$refused" = 0 ] || fail "failurePolicy Ignore again: a Deployment in $WEBHOOK_NS is still refused after 15s: $(tr '\n' ' ' <"$WORK/dry.out")"
    kc label namespace "$NS_ALL" "$WEBHOOK_LABEL-" >&2 || fail "unlabelling namespace $NS_ALL"
    delete_namespace "$WEBHOOK_NS" || fail "deleting namespace $WEBHOOK_NS"
    log "failurePolicy Ignore again: admitted in $WEBHOOK_NS; the test namespace deleted"
}

# With reconciler.namespace the rights hold in that namespace only: upgrade persys-all to watch
# persys-default (the RoleBinding then lives in another namespace than the ServiceAccount).
step_reconciler_namespaced() {
    local v
    need_cluster
    hc upgrade "$RELEASE" "$CHART" -n "$NS_ALL" -f "$ALL_ON" --set reconciler.namespace="$NS_DEFAULT" --timeout 90s >"$WORK/upgrade.txt" 2>&1 ||
        { sed 's/^/    /' "$WORK/upgrade.txt" >&2; fail "helm upgrade -n $NS_ALL --set reconciler.namespace=$NS_DEFAULT"; }
    ! kc get clusterrolebinding "$RECONCILER_ROLE" -o name >/dev/null 2>&1 || fail "ClusterRoleBinding $RECONCILER_ROLE is still there"
    ! kc get clusterrolebinding "$DISCOVERY_ROLE" -o name >/dev/null 2>&1 || fail "ClusterRoleBinding $DISCOVERY_ROLE is still there (discovery is off with reconciler.namespace)"
    v=$(kc get rolebinding "$RECONCILER_ROLE" -n "$NS_DEFAULT" -o json | jq -r '"\(.roleRef.kind)/\(.roleRef.name) -> \([.subjects[] | "\(.kind)/\(.namespace)/\(.name)"] | join(","))"') ||
        fail "no RoleBinding $RECONCILER_ROLE in $NS_DEFAULT"
    [ "$v" = "ClusterRole/$RECONCILER_ROLE -> ServiceAccount/$NS_ALL/$RECONCILER_NAME" ] || fail "RoleBinding $NS_DEFAULT/$RECONCILER_ROLE: $v"
    v=$(kenv deployment "$RECONCILER_NAME" "$NS_ALL" '.[] | select(.name == "PERSYS_RECONCILER_NAMESPACE") | .value') ||
        fail "kubectl get deployment $RECONCILER_NAME -n $NS_ALL"
    [ "$v" = "$NS_DEFAULT" ] || fail "deployment/$RECONCILER_NAME: PERSYS_RECONCILER_NAMESPACE is '$v', not $NS_DEFAULT"
    CAN_I_FAILED=0 CAN_I_ASKED_yes=0 CAN_I_ASKED_no=0
    can_i yes patch applicationpersonas.dorgu.io --subresource=status -n "$NS_DEFAULT"
    can_i yes watch applicationpersonas.dorgu.io -n "$NS_DEFAULT"
    can_i yes list deployments.apps -n "$NS_DEFAULT"
    can_i yes list pods -n "$NS_DEFAULT"
    can_i no list applicationpersonas.dorgu.io -A
    can_i no list nodes
    can_i no list clusterpersonas.dorgu.io
    can_i no list deployments.apps -A
    can_i no list deployments.apps -n "$NS_ALL"
    can_i no patch applicationpersonas.dorgu.io --subresource=status -n "$NS_ALL"
    can_i no get secrets -n "$NS_DEFAULT"
    # Its Lease stays in the release namespace.
    can_i yes update "leases.coordination.k8s.io/$LEASE_NAME" -n "$NS_ALL"
    can_i no create leases.coordination.k8s.io -n "$NS_DEFAULT"
    [ "$CAN_I_FAILED" = 0 ] || fail "with reconciler.namespace=$NS_DEFAULT the ServiceAccount's rights are not confined to $NS_DEFAULT (see above)"
    # The webhook's namespace read, through the RoleBinding: that namespace only (a GET of a
    # namespace is authorized in the namespace itself), for real.
    kc get namespace "$NS_DEFAULT" --as="$RECONCILER_SA" -o name >/dev/null 2>"$WORK/as.err" ||
        fail "with reconciler.namespace=$NS_DEFAULT, as the reconciler, kubectl get namespace $NS_DEFAULT: $(tr '\n' ' ' <"$WORK/as.err")"
    if kc get namespace "$NS_ALL" --as="$RECONCILER_SA" -o name >/dev/null 2>"$WORK/as.err"; then
        fail "with reconciler.namespace=$NS_DEFAULT, as the reconciler, kubectl get namespace $NS_ALL succeeded"
    fi
    grep -q Forbidden "$WORK/as.err" || fail "kubectl get namespace $NS_ALL as the reconciler failed, but not as Forbidden: $(tr '\n' ' ' <"$WORK/as.err")"
    # The webhook selects that namespace only.
    v=$(kc get validatingwebhookconfiguration "$WEBHOOK_CONFIG" -o json | jq -r --arg ns "$NS_DEFAULT" \
        '[.webhooks[0].namespaceSelector.matchExpressions[] | select(.key == "kubernetes.io/metadata.name" and .operator == "In" and .values == [$ns])] | length') ||
        fail "kubectl get validatingwebhookconfiguration $WEBHOOK_CONFIG"
    [ "$v" = 1 ] || fail "with reconciler.namespace=$NS_DEFAULT the webhook's namespaceSelector does not select $NS_DEFAULT only"
    log "reconciler.namespace=$NS_DEFAULT: RoleBinding there only, the ClusterRoleBinding gone; rights in $NS_DEFAULT (its namespace readable, $NS_ALL not), none across namespaces or in $NS_ALL; the Lease rights stay in $NS_ALL; the webhook selects $NS_DEFAULT only"
}

# delete_namespace NS: delete it and wait until it is gone; on a timeout, show why it is stuck.
delete_namespace() {
    local ns=$1
    kc get namespace "$ns" >/dev/null 2>&1 || return 0
    if ! kc delete namespace "$ns" --wait=true --timeout=90s >&2; then
        log "namespace $ns is still there after 90s; its conditions:"
        kc get namespace "$ns" -o jsonpath='{range .status.conditions[*]}{.type}={.status}: {.message}{"\n"}{end}' 2>&1 |
            sed 's/^/    /' >&2 || true
        return 1
    fi
}

# Helm 4 installs crds/ by server-side apply as field manager `helm`, even when they exist, so it
# co-owns their fields after a run. A later apply by another test (manager persys-tests, without
# --force-conflicts) of a changed CRD would then conflict with a manager that is gone: drop the
# `helm` entry from the managed fields of the chart's CRDs (the objects themselves stay).
release_crds_from_helm() {
    local crd rc=0
    [ -d "$CHART/crds" ] || return 0
    while IFS= read -r crd; do
        [ -n "$crd" ] || continue
        kc get crd "$crd" -o json --show-managed-fields >"$WORK/crd-mf.json" 2>/dev/null || continue
        jq -e 'any(.metadata.managedFields[]?; .manager == "helm") and any(.metadata.managedFields[]?; .manager != "helm")' \
            "$WORK/crd-mf.json" >/dev/null || continue
        jq '{metadata: {managedFields: [.metadata.managedFields[] | select(.manager != "helm")]}}' "$WORK/crd-mf.json" >"$WORK/crd-mf.patch"
        if kc patch crd "$crd" --type=merge --patch-file "$WORK/crd-mf.patch" >/dev/null; then
            log "crd/$crd: Helm's field ownership dropped (managers now: $(kc get crd "$crd" -o json --show-managed-fields | jq -r '[.metadata.managedFields[].manager] | join(", ")'))"
        else
            rc=1
        fi
    done < <(cat "$CHART"/crds/*.yaml | objects /dev/stdin | awk -F'\t' '$2 == "CustomResourceDefinition" { print $4 }')
    return "$rc"
}

# Uninstall both releases and delete their namespaces (no error if they are not there).
delete_releases() {
    local ns rc=0
    for ns in "$NS_DEFAULT" "$NS_ALL"; do
        if hc status "$RELEASE" -n "$ns" >/dev/null 2>&1; then
            hc uninstall "$RELEASE" -n "$ns" --timeout 60s >&2 || { log "helm uninstall -n $ns failed"; rc=1; }
        fi
        delete_namespace "$ns" || rc=1
        # Cluster-scoped objects outlive the namespace when an uninstall failed.
        kc delete clusterrolebinding,clusterrole,validatingwebhookconfiguration "$ns-$RELEASE-reconciler" --ignore-not-found >&2 || rc=1
    done
    # The webhook test's namespace.
    delete_namespace "$WEBHOOK_NS" || rc=1
    release_crds_from_helm || rc=1
    return "$rc"
}

step_uninstall() {
    local ns
    need_cluster
    for ns in "$NS_DEFAULT" "$NS_ALL"; do
        if hc status "$RELEASE" -n "$ns" >/dev/null 2>&1; then
            hc uninstall "$RELEASE" -n "$ns" --timeout 60s >&2 || fail "helm uninstall $RELEASE -n $ns"
        else
            log "no release $RELEASE in $ns to uninstall"
        fi
    done
    for ns in "$NS_DEFAULT" "$NS_ALL"; do
        delete_namespace "$ns" || fail "namespace $ns not deleted within 90s"
    done
    for ns in "$NS_DEFAULT" "$NS_ALL"; do
        ! hc status "$RELEASE" -n "$ns" >/dev/null 2>&1 || fail "helm still lists release $RELEASE in $ns"
        ! kc get namespace "$ns" >/dev/null 2>&1 || fail "namespace $ns still exists"
    done
    # The release's cluster-scoped objects went with it; the chart's CRDs stay (Helm never
    # deletes crds/; other tests share applicationpersonas.dorgu.io, so neither does this check).
    ! kc get clusterrole "$RECONCILER_ROLE" -o name >/dev/null 2>&1 || fail "ClusterRole $RECONCILER_ROLE outlived helm uninstall"
    ! kc get validatingwebhookconfiguration "$WEBHOOK_CONFIG" -o name >/dev/null 2>&1 || fail "ValidatingWebhookConfiguration $WEBHOOK_CONFIG outlived helm uninstall"
    delete_namespace "$WEBHOOK_NS" || fail "namespace $WEBHOOK_NS not deleted within 90s"
    kc get crd applicationpersonas.dorgu.io -o name >/dev/null || fail "crd/applicationpersonas.dorgu.io is gone after helm uninstall"
    release_crds_from_helm || fail "could not drop Helm's field ownership of the chart's CRDs"
    kc delete -f "$CRD_DIR" --ignore-not-found --wait=true --timeout=60s >&2 ||
        fail "deleting the stand-in CRDs"
    touch "$WORK/cluster-clean"
}

# ---------------------------------------------------------------------------
# Runner
# ---------------------------------------------------------------------------

SUMMARY=()
FAILED=()
CHILD=""
CLUSTER_TOUCHED=0

# run_step NAME FUNCTION: run FUNCTION in a subshell (errexit applies inside), record the result.
run_step() {
    local name=$1 fn=$2 rc=0 t0=$SECONDS status
    printf '\n[helm-check] ==> %s\n' "$name" >&2
    ("$fn") &
    CHILD=$!
    wait "$CHILD" || rc=$?
    CHILD=""
    case "$rc" in
        0) status=PASS ;;
        77) status=SKIP ;;
        *)
            status=FAIL
            FAILED+=("$name")
            ;;
    esac
    printf '[helm-check] <== %s: %s (%ss)\n' "$name" "$status" "$((SECONDS - t0))" >&2
    SUMMARY+=("$(printf '%-4s  %-64s %4ss' "$status" "$name" "$((SECONDS - t0))")")
    return 0
}

on_exit() {
    local rc=$?
    trap '' INT TERM
    set +e
    if [ -n "$CHILD" ]; then
        kill -TERM "$CHILD" 2>/dev/null
        wait "$CHILD" 2>/dev/null
    fi
    if [ "$CLUSTER_TOUCHED" = 1 ] && [ ! -e "$WORK/cluster-clean" ]; then
        log "cleaning up the cluster after an early exit"
        delete_releases
    fi
    rm -rf "$WORK"
    exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "chart: $CHART"
run_step "0. tools: helm and jq run, chart files present" step_tools
run_step "1. helm lint --strict (default values)" step_lint_default
run_step "1. helm lint --strict (ci/all-on-values.yaml)" step_lint_all_on
run_step "2. helm template (default values)" step_template_default
run_step "2. helm template (all-on values; every template and kind)" step_template_all_on
run_step "2. metrics pipeline: on with the all-on values, off by default" step_metrics_render
run_step "2. reconciler: on with the all-on values (RBAC, Lease, webhook), off by default" step_reconciler_render
run_step "3. values.schema.json: complete, typed, rejects misspelt keys" step_schema

if [ -n "$KCFG" ]; then
    CLUSTER_TOUCHED=1
fi
run_step "4. API server reachable, leftovers of earlier runs removed" step_cluster
run_step "4. stand-in CRDs (tests/helm/crds) and the chart's crds/ applied and Established" step_crds
run_step "5. helm install -n $NS_DEFAULT (default values) and verify" step_install_default
run_step "5. helm install -n $NS_ALL (all-on values) and verify" step_install_all_on
run_step "5. metrics pipeline read back from the API server" step_metrics_cluster
run_step "5. reconciler: CRD Established, least-privilege RBAC and Lease as its ServiceAccount" step_reconciler_cluster
run_step "5. reconciler webhook: registered, consulted only where selected (Fail/Ignore)" step_reconciler_webhook
run_step "5. reconciler.namespace: helm upgrade, rights confined to that namespace" step_reconciler_namespaced
run_step "6. helm uninstall both, namespaces and stand-in CRDs deleted" step_uninstall

printf '\n[helm-check] summary (chart deploy/helm/persys):\n' >&2
printf '[helm-check]   %s\n' "${SUMMARY[@]}" >&2
if [ "${#FAILED[@]}" -gt 0 ]; then
    printf '[helm-check] FAILED: %s\n' "$(printf '%s; ' "${FAILED[@]}" | sed 's/; $//')" >&2
    exit 1
fi
skipped=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^SKIP' || true)
if [ "$skipped" -gt 0 ]; then
    printf '[helm-check] no step failed; %s skipped\n' "$skipped" >&2
else
    printf '[helm-check] all steps passed\n' >&2
fi
