{{/* Chart name, truncated to the 63 characters a label value may hold. */}}
{{- define "chatservice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Object-name prefix: `<release>-<chart>`, or the release name when it contains the chart name. */}}
{{- define "chatservice.fullname" -}}
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

{{- define "chatservice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Selector labels: name and instance only. They are immutable on a Deployment, so nothing that
changes between releases (version, chart) may be in them.
*/}}
{{- define "chatservice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "chatservice.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Standard labels of every object. */}}
{{- define "chatservice.labels" -}}
helm.sh/chart: {{ include "chatservice.chart" . }}
{{ include "chatservice.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chatservice
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The operator's objects carry their own name (`<name>-operator`), so its Deployment's selector,
on name and instance only, can never match the service pods the operator creates.
*/}}
{{- define "chatservice.operator.selectorLabels" -}}
app.kubernetes.io/name: {{ printf "%s-operator" (include "chatservice.name" .) | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "chatservice.operator.labels" -}}
helm.sh/chart: {{ include "chatservice.chart" . }}
{{ include "chatservice.operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: chatservice
app.kubernetes.io/component: operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "chatservice.operator.fullname" -}}
{{- printf "%s-operator" (include "chatservice.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chatservice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "chatservice.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* `repository@digest` when a digest is given (it wins), else `repository:tag` (tag defaults to appVersion). */}}
{{- define "chatservice.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "chatservice.chatServiceName" -}}
{{- default (include "chatservice.fullname" .) .Values.chatService.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "chatservice.databaseSecretName" -}}
{{- default (printf "%s-database" (include "chatservice.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "chatservice.adminSecretName" -}}
{{- default (printf "%s-admin" (include "chatservice.fullname" .)) .Values.auth.existingSecret }}
{{- end }}

{{/*
The restricted Pod Security profile, shared by every pod the chart creates. The UID/GID are the
image's fixed non-root user (Dockerfile).
*/}}
{{- define "chatservice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "chatservice.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Multi-window, multi-burn-rate alerts on a bad-request ratio recorded over 5m...3d (the Google
SRE workbook's pairs for a 30-day error budget): critical when 2 % of the budget goes in an hour
or 5 % in six hours, warning when 10 % goes in a day or in three days.
*/}}
{{- define "chatservice.burnRateAlerts" -}}
{{- $budget := printf "(1 - %v)" .objective }}
- alert: {{ .alert }}
  expr: |-
    ({{ .ratio }}:rate1h > 14.4 * {{ $budget }} and {{ .ratio }}:rate5m > 14.4 * {{ $budget }})
    or
    ({{ .ratio }}:rate6h > 6 * {{ $budget }} and {{ .ratio }}:rate30m > 6 * {{ $budget }})
  for: 2m
  labels:
    severity: critical
  annotations:
    summary: "{{ `{{ $labels.namespace }}/{{ $labels.job }}` }} spends its error budget fast: {{ .what }}."
    description: "Objective {{ .objective }}; at this rate the 30-day budget is gone within days."
    {{- include "chatservice.runbook" (list .root (lower .alert)) | nindent 4 }}
- alert: {{ .alert }}
  expr: |-
    ({{ .ratio }}:rate1d > 3 * {{ $budget }} and {{ .ratio }}:rate2h > 3 * {{ $budget }})
    or
    ({{ .ratio }}:rate3d > {{ $budget }} and {{ .ratio }}:rate6h > {{ $budget }})
  for: 15m
  labels:
    severity: warning
  annotations:
    summary: "{{ `{{ $labels.namespace }}/{{ $labels.job }}` }} spends its error budget faster than it lasts: {{ .what }}."
    description: "Objective {{ .objective }}; at this rate the 30-day budget runs out before the month does."
    {{- include "chatservice.runbook" (list .root (lower .alert)) | nindent 4 }}
{{- end }}

{{/*
An alert's link to its section of docs/runbook.md: `runbook_url` when the runbook is published
somewhere (monitoring.prometheusRule.runbookURL), otherwise a `runbook` annotation naming the
file and section in this chart's version, which an on-call engineer can still follow.
Call as (list $ "<anchor>").
*/}}
{{- define "chatservice.runbook" -}}
{{- $root := index . 0 }}
{{- $anchor := index . 1 }}
{{- with $root.Values.monitoring.prometheusRule.runbookURL }}
runbook_url: {{ printf "%s#%s" . $anchor }}
{{- else }}
runbook: {{ printf "docs/runbook.md#%s (chatservice chart %s)" $anchor $root.Chart.Version | quote }}
{{- end }}
{{- end }}
