{{- define "rerank-sidecar.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rerank-sidecar.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "rerank-sidecar.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: sidecar
{{- end -}}

{{/* The sidecar's config: the values' config, with the fleet's parts wired in. */}}
{{- define "rerank-sidecar.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if .Values.valkey.enabled -}}
{{- $_ := set $cfg "cache" (merge (dict "url" (printf "redis://%s-valkey:6379/0" (include "rerank-sidecar.fullname" .))) (default dict $cfg.cache)) -}}
{{- end -}}
{{- if .Values.fleet.configStore.enabled -}}
{{- $store := dict "index" .Values.fleet.configStore.index "key_env" "RERANK_SIDECAR_CONFIG_KEY" -}}
{{- if .Values.fleet.configStore.basicAuthEnv -}}
{{- $_ := set $store "basic_auth_env" .Values.fleet.configStore.basicAuthEnv -}}
{{- end -}}
{{- $_ := set $cfg "config_store" $store -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
