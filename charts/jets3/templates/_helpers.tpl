{{/* Name prefix of every object: the release name unless fullnameOverride is set. */}}
{{- define "jets3.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "jets3.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: jets3
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: jets3
{{- end -}}

{{/* Selector labels of one component: (dict "ctx" $ "component" "gateway"). */}}
{{- define "jets3.selectorLabels" -}}
app.kubernetes.io/name: jets3
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The operator's --gateway-selector: the gateway pods' selector labels as a label query. */}}
{{- define "jets3.gatewaySelector" -}}
app.kubernetes.io/name=jets3,app.kubernetes.io/instance={{ .Release.Name }},app.kubernetes.io/component=gateway
{{- end -}}

{{/* The push Service's DNS name: the SAN of the serving certificate and the operator's --push-server-name. */}}
{{- define "jets3.pushServerName" -}}
{{ include "jets3.fullname" . }}-gateway-push.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* NATS URL(s): the embedded server's Service, or nats.url. */}}
{{- define "jets3.natsUrl" -}}
{{- if .Values.nats.embedded.enabled -}}
nats://{{ include "jets3.fullname" . }}-nats.{{ .Release.Namespace }}.svc:4222
{{- else -}}
{{ required "nats.url is required (or set nats.embedded.enabled=true)" .Values.nats.url }}
{{- end -}}
{{- end -}}

{{/* The S3 endpoint URL apps are given. */}}
{{- define "jets3.endpoint" -}}
{{- if .Values.endpoint -}}
{{ .Values.endpoint }}
{{- else -}}
http{{ if .Values.gateway.tls.secretName }}s{{ end }}://{{ include "jets3.fullname" . }}-gateway.{{ .Release.Namespace }}.svc:{{ .Values.gateway.service.port }}
{{- end -}}
{{- end -}}

{{/* An image reference: (dict "ctx" $ "image" .Values.gateway.image). */}}
{{- define "jets3.image" -}}
{{ .image.repository }}:{{ default .ctx.Chart.AppVersion .image.tag }}
{{- end -}}

{{/* NATS connection flags, env and mounts shared by the gateway and the operator. */}}
{{- define "jets3.natsArgs" -}}
- --nats-url={{ include "jets3.natsUrl" . }}
{{- with .Values.nats.auth }}
{{- if and .existingSecret .credsKey }}
- --nats-creds=/etc/jets3/nats-creds/{{ .credsKey }}
{{- end }}
{{- end }}
{{- if .Values.nats.tls.existingSecret }}
- --nats-tls-ca=/etc/jets3/nats-tls/ca.crt
{{- if .Values.nats.tls.clientCert }}
- --nats-tls-cert=/etc/jets3/nats-tls/tls.crt
- --nats-tls-key=/etc/jets3/nats-tls/tls.key
{{- end }}
{{- end }}
{{- if .Values.nats.tls.required }}
- --nats-tls-required
{{- end }}
{{- end -}}

{{- define "jets3.natsEnv" -}}
{{- $secret := .Values.nats.auth.existingSecret -}}
{{- if $secret }}
{{- range $env, $key := dict "JETS3_NATS_USER" .Values.nats.auth.userKey "JETS3_NATS_PASSWORD" .Values.nats.auth.passwordKey "JETS3_NATS_TOKEN" .Values.nats.auth.tokenKey "JETS3_NATS_NKEY_SEED" .Values.nats.auth.nkeySeedKey }}
{{- if $key }}
- name: {{ $env }}
  valueFrom:
    secretKeyRef: {name: {{ $secret }}, key: {{ $key }}}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "jets3.natsMounts" -}}
{{- if and .Values.nats.auth.existingSecret .Values.nats.auth.credsKey }}
- {name: nats-creds, mountPath: /etc/jets3/nats-creds, readOnly: true}
{{- end }}
{{- if .Values.nats.tls.existingSecret }}
- {name: nats-tls, mountPath: /etc/jets3/nats-tls, readOnly: true}
{{- end }}
{{- end -}}

{{- define "jets3.natsVolumes" -}}
{{- if and .Values.nats.auth.existingSecret .Values.nats.auth.credsKey }}
- name: nats-creds
  secret:
    secretName: {{ .Values.nats.auth.existingSecret }}
    items: [{key: {{ .Values.nats.auth.credsKey }}, path: {{ .Values.nats.auth.credsKey }}}]
{{- end }}
{{- if .Values.nats.tls.existingSecret }}
- name: nats-tls
  secret: {secretName: {{ .Values.nats.tls.existingSecret }}}
{{- end }}
{{- end -}}

{{/* The Secret holding the gateway admin token, and its key. */}}
{{- define "jets3.adminTokenSecret" -}}
{{- .Values.gateway.adminToken.existingSecret | default (printf "%s-gateway-admin-token" (include "jets3.fullname" .)) -}}
{{- end }}

{{/* "true" when the embedded NATS keeps JetStream on a PersistentVolumeClaim. persistence.enabled
auto: as the installed StatefulSet has it (its volumeClaimTemplates cannot change), else when a
storageClass is set or the cluster has a default StorageClass. `helm template` cannot look up:
emptyDir there. */}}
{{- define "jets3.natsPersistent" -}}
{{- $p := .Values.nats.embedded.persistence -}}
{{- $mode := toString $p.enabled -}}
{{- if eq $mode "true" -}}
true
{{- else if eq $mode "auto" -}}
{{- $sts := lookup "apps/v1" "StatefulSet" .Release.Namespace (printf "%s-nats" (include "jets3.fullname" .)) -}}
{{- if $sts -}}
{{- if $sts.spec.volumeClaimTemplates }}true{{ end -}}
{{- else if $p.storageClass -}}
true
{{- else -}}
{{- $default := false -}}
{{- range (lookup "storage.k8s.io/v1" "StorageClass" "" "").items -}}
{{- $a := .metadata.annotations | default dict -}}
{{- if or (eq (index $a "storageclass.kubernetes.io/is-default-class" | default "") "true") (eq (index $a "storageclass.beta.kubernetes.io/is-default-class" | default "") "true") -}}
{{- $default = true -}}
{{- end -}}
{{- end -}}
{{- if $default }}true{{ end -}}
{{- end -}}
{{- else if ne $mode "false" -}}
{{- fail (printf "nats.embedded.persistence.enabled must be auto, true or false (got %s)" $mode) -}}
{{- end -}}
{{- end -}}

{{/* Servers of the embedded NATS: 1, 3 or 5. */}}
{{- define "jets3.natsReplicas" -}}
{{- $r := int .Values.nats.embedded.replicas -}}
{{- if not (has $r (list 1 3 5)) -}}
{{- fail (printf "nats.embedded.replicas must be 1, 3 or 5 (got %v)" .Values.nats.embedded.replicas) -}}
{{- end -}}
{{- $r -}}
{{- end -}}
