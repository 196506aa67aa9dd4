{{/* Chart name. */}}
{{- define "buildbot-webhook.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: also the Service's name, which the certificate names. */}}
{{- define "buildbot-webhook.fullname" -}}
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

{{/* Kubernetes recommended labels. */}}
{{- define "buildbot-webhook.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "buildbot-webhook.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: admission-webhook
app.kubernetes.io/part-of: buildbot
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "buildbot-webhook.selectorLabels" -}}
app.kubernetes.io/name: {{ include "buildbot-webhook.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "buildbot-webhook.tlsSecretName" -}}
{{ include "buildbot-webhook.fullname" . }}-tls
{{- end }}

{{/* The DNS names the API server uses for the Service. */}}
{{- define "buildbot-webhook.dnsNames" -}}
{{- $svc := include "buildbot-webhook.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) | toJson }}
{{- end }}

{{/* The host of webhook.url (url mode), without port or IPv6 brackets. */}}
{{- define "buildbot-webhook.urlHost" -}}
{{- regexReplaceAll ":[0-9]+$" (urlParse .Values.webhook.url).host "" | trimPrefix "[" | trimSuffix "]" -}}
{{- end }}

{{/* Whether the webhook runs in the cluster (not url mode). */}}
{{- define "buildbot-webhook.inCluster" -}}
{{- if not .Values.webhook.url }}true{{ end -}}
{{- end }}
