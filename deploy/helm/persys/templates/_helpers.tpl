{{/*
Helpers shared by every Persys service. Per-service templates call them with a context
  (dict "root" $ "component" "<service>" "values" .Values.<service>)
so that a new service only needs its own deployment/service/serviceaccount/networkpolicy files.
*/}}

{{- define "persys.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "persys.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "persys.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object of the release. Takes the root context. */}}
{{- define "persys.labels" -}}
helm.sh/chart: {{ include "persys.chart" . }}
app.kubernetes.io/name: {{ include "persys.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: persys
{{- end }}

{{/* Name of a service's objects: <fullname>-<service>. Takes the service context. */}}
{{- define "persys.componentName" -}}
{{- printf "%s-%s" (include "persys.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of a service's objects. Takes the service context. */}}
{{- define "persys.componentLabels" -}}
{{ include "persys.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector of a service's pods. Takes the service context. */}}
{{- define "persys.selectorLabels" -}}
app.kubernetes.io/name: {{ include "persys.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image reference. Takes the root context. */}}
{{- define "persys.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* HOST:PORT a service binds inside its pod. Takes (list $ port). */}}
{{- define "persys.listen" -}}
{{- printf "%s:%d" (index . 0).Values.listenAddress (int (index . 1)) }}
{{- end }}

{{/*
The `tls` volume of a service: ca.pem, cert.pem and key.pem, from cert-manager's Secret
<fullname>-<service>-tls or from the pre-created tls.existingSecret. Mounted at /etc/persys/tls;
no subPath, so rotated certificates reach the running pod. Takes the service context.
*/}}
{{- define "persys.tlsVolume" -}}
- name: tls
  secret:
    {{- if .root.Values.tls.certManager.enabled }}
    secretName: {{ include "persys.componentName" . }}-tls
    items:
      - key: ca.crt
        path: ca.pem
      - key: tls.crt
        path: cert.pem
      - key: tls.key
        path: key.pem
    {{- else }}
    secretName: {{ required "tls.existingSecret is required: create it from `persys certs init` (docs/deploy.md), or enable tls.certManager" .root.Values.tls.existingSecret }}
    items:
      - key: ca.pem
        path: ca.pem
      - key: {{ .component }}-cert.pem
        path: cert.pem
      - key: {{ .component }}-key.pem
        path: key.pem
    {{- end }}
    defaultMode: 288 # 0440: readable by the pod's fsGroup only
{{- end }}

{{/* Environment every service shares: mTLS files, admin server, logs, traces. Takes the service context. */}}
{{- define "persys.commonEnv" -}}
- name: PERSYS_TLS_CA
  value: /etc/persys/tls/ca.pem
- name: PERSYS_TLS_CERT
  value: /etc/persys/tls/cert.pem
- name: PERSYS_TLS_KEY
  value: /etc/persys/tls/key.pem
- name: PERSYS_TLS_RELOAD_INTERVAL
  value: {{ .root.Values.tls.reloadInterval | quote }}
{{ include "persys.telemetryEnv" . }}
{{- end }}

{{/*
The admin server, logs and traces (the kit's TelemetryArgs), for a service without mTLS
material (the reconciler). Takes the service context.
*/}}
{{- define "persys.telemetryEnv" -}}
- name: PERSYS_ADMIN_LISTEN
  value: {{ include "persys.listen" (list .root .values.ports.admin) | quote }}
- name: PERSYS_LOG_FORMAT
  value: {{ .root.Values.log.format | quote }}
- name: PERSYS_LOG
  value: {{ .root.Values.log.level | quote }}
{{- with .root.Values.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* Scheduling fields of a pod spec. Takes the service context. */}}
{{- define "persys.scheduling" -}}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The agent's node labels as KEY=VALUE,KEY=VALUE. Takes the labels map. */}}
{{- define "persys.agentLabels" -}}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
{{- join "," $pairs }}
{{- end }}

{{/* The chart's scheduler at a port: https://<fullname>-scheduler:PORT. Takes (list $ port). */}}
{{- define "persys.schedulerUrl" -}}
{{- $root := index . 0 }}
{{- printf "https://%s:%d" (include "persys.componentName" (dict "root" $root "component" "scheduler")) (int (index . 1)) }}
{{- end }}

{{/*
The scheduler's etcd endpoints, comma separated: scheduler.etcd.endpoints, else the chart's etcd.
Takes the root context.
*/}}
{{- define "persys.etcdEndpoints" -}}
{{- $endpoints := .Values.scheduler.etcd.endpoints }}
{{- if $endpoints }}
{{- if and (eq (len $endpoints) 1) (gt (int .Values.scheduler.replicaCount) 1) }}
{{- if eq (index $endpoints 0) "memory" }}
{{- fail "scheduler.etcd.endpoints [memory] keeps state inside one process: set scheduler.replicaCount to 1" }}
{{- end }}
{{- end }}
{{- join "," $endpoints }}
{{- else if .Values.etcd.enabled }}
{{- printf "http://%s:%d" (include "persys.componentName" (dict "root" . "component" "etcd")) (int .Values.etcd.ports.client) }}
{{- else }}
{{- fail "the scheduler needs etcd: set scheduler.etcd.endpoints, or etcd.enabled=true" }}
{{- end }}
{{- end }}

{{/* Name of the reconciler's leader-election Lease. Takes the root context. */}}
{{- define "persys.reconcilerLeaseName" -}}
{{- .Values.reconciler.leaderElection.leaseName | default (include "persys.componentName" (dict "root" . "component" "reconciler")) }}
{{- end }}

{{/* Secret holding the reconciler webhook's tls.crt, tls.key and ca.crt: cert-manager's
<fullname>-reconciler-webhook-tls, or reconciler.webhook.existingSecret. Takes the root context. */}}
{{- define "persys.reconcilerWebhookSecret" -}}
{{- if .Values.tls.certManager.enabled -}}
{{- printf "%s-webhook-tls" (include "persys.componentName" (dict "root" . "component" "reconciler")) }}
{{- else -}}
{{- .Values.reconciler.webhook.existingSecret }}
{{- end }}
{{- end }}
