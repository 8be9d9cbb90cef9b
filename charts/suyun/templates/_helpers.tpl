{{/* Names, labels and shared pieces of the Suyun chart. */}}

{{- define "suyun.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release name when it already contains the chart name. */}}
{{- define "suyun.fullname" -}}
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

{{- define "suyun.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "suyun.labels" -}}
helm.sh/chart: {{ include "suyun.chart" . }}
app.kubernetes.io/name: {{ include "suyun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: suyun
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "operator"). */}}
{{- define "suyun.selectorLabels" -}}
app.kubernetes.io/name: {{ include "suyun.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "suyun.componentLabels" -}}
{{ include "suyun.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "suyun.operator.fullname" -}}
{{- printf "%s-operator" (include "suyun.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "suyun.apiserver.fullname" -}}
{{- printf "%s-apiserver" (include "suyun.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "suyun.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "suyun.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "suyun.apiserver.serviceAccountName" -}}
{{- if .Values.apiserver.serviceAccount.create }}
{{- default (include "suyun.apiserver.fullname" .) .Values.apiserver.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.apiserver.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "suyun.operator.leaseName" -}}
{{- default (include "suyun.operator.fullname" .) .Values.operator.leaderElection.leaseName }}
{{- end }}

{{- define "suyun.apiserver.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "suyun.apiserver.fullname" .)) .Values.apiserver.tls.secretName }}
{{- end }}

{{- define "suyun.apiserver.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "suyun.apiserver.fullname" .)) .Values.apiserver.auth.tokens.secretName }}
{{- end }}

{{/* The image reference of one component: (dict "ctx" $ "image" .Values.operator.image). */}}
{{- define "suyun.image" -}}
{{- $registry := .ctx.Values.image.registry }}
{{- $repo := ternary (printf "%s/%s" $registry .image.repository) .image.repository (ne $registry "") }}
{{- if .image.digest }}
{{- printf "%s@%s" $repo .image.digest }}
{{- else }}
{{- printf "%s:%s" $repo (default .ctx.Chart.AppVersion .ctx.Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The etcd endpoints, comma-separated; fails with a hint when there are none. */}}
{{- define "suyun.store.endpoints" -}}
{{- $endpoints := .Values.store.endpoints | default list }}
{{- if not $endpoints }}
{{- fail "store.endpoints is empty: set the client URLs of the status-store etcd (e.g. --set store.endpoints={https://etcd-0.etcd:2379})" }}
{{- end }}
{{- if .Values.store.tls.caSecret.name }}
{{- range $endpoints }}
{{- if not (hasPrefix "https://" .) }}
{{- fail (printf "store.tls.caSecret is set but the endpoint %s is not https://" .) }}
{{- end }}
{{- end }}
{{- end }}
{{- join "," $endpoints }}
{{- end }}

{{/* Pod and container security context shared by both components (Pod Security "restricted"). */}}
{{- define "suyun.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "suyun.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Topology spread constraints of one component: (dict "ctx" $ "component" "operator"
"constraints" .Values.operator.topologySpreadConstraints). A constraint without a
labelSelector selects the component's own pods.
*/}}
{{- define "suyun.topologySpread" -}}
{{- $selector := include "suyun.selectorLabels" (dict "ctx" .ctx "component" .component) | fromYaml }}
{{- $out := list }}
{{- range .constraints }}
{{- $c := deepCopy . }}
{{- if not (hasKey $c "labelSelector") }}
{{- $_ := set $c "labelSelector" (dict "matchLabels" $selector) }}
{{- end }}
{{- $out = append $out $c }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/* The ports of a NetworkPolicy rule: (dict "ports" list "protocol" "TCP"). */}}
{{- define "suyun.netpolPorts" -}}
{{- $protocol := .protocol }}
{{- range .ports }}
- protocol: {{ $protocol }}
  port: {{ . }}
{{- end }}
{{- end }}

{{/* Egress rule to the cluster DNS. */}}
{{- define "suyun.netpolDNS" -}}
- ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
  {{- with .Values.networkPolicy.dns.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Egress rule to the status-store etcd. */}}
{{- define "suyun.netpolStore" -}}
- ports:
    {{- include "suyun.netpolPorts" (dict "ports" .Values.networkPolicy.store.ports "protocol" "TCP") | nindent 4 }}
  {{- with .Values.networkPolicy.store.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}

{{/* Member cluster mode: the operator's ServiceAccount in a member, and the ClusterRole's name. */}}
{{- define "suyun.member.serviceAccountName" -}}
{{- default (include "suyun.operator.fullname" .) .Values.memberCluster.serviceAccount.name }}
{{- end }}

{{- define "suyun.member.fullname" -}}
{{- printf "%s-member" (include "suyun.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
