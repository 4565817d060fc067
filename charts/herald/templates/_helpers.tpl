{{/* Names and labels shared by every template. */}}
{{- define "herald.fullname" -}}
{{- if contains "herald" .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-herald" .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "herald.labels" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include "herald.selector" (list . "operator") */}}
{{- define "herald.selector" -}}
app.kubernetes.io/name: herald
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "herald.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The one namespace watched, or nothing for all namespaces. */}}
{{- define "herald.watchNamespace" -}}
{{- join "," .Values.watchNamespaces -}}
{{- end -}}

{{/* Environment every component shares: NATS connection, logging, watch scope. */}}
{{- define "herald.commonEnv" -}}
- name: HERALD_NATS_URL
  value: {{ .Values.nats.url | quote }}
- name: HERALD_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- with (include "herald.watchNamespace" .) }}
- name: HERALD_WATCH_NAMESPACE
  value: {{ . | quote }}
{{- end }}
{{- if .Values.nats.credentialsSecret.name }}
- name: HERALD_NATS_CREDS
  value: /etc/herald/nats-creds/{{ .Values.nats.credentialsSecret.key }}
{{- end }}
{{- if .Values.nats.tokenSecret.name }}
- name: HERALD_NATS_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.nats.tokenSecret.name }}
      key: {{ .Values.nats.tokenSecret.key }}
{{- end }}
{{- with .Values.nats.userSecret }}{{ if .name }}
- name: HERALD_NATS_USER
  valueFrom:
    secretKeyRef: {name: {{ .name }}, key: {{ .userKey }}}
- name: HERALD_NATS_PASSWORD
  valueFrom:
    secretKeyRef: {name: {{ .name }}, key: {{ .passwordKey }}}
{{- end }}{{ end }}
{{- if .Values.nats.nkeySecret.name }}
- name: HERALD_NATS_NKEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.nats.nkeySecret.name }}
      key: {{ .Values.nats.nkeySecret.key }}
{{- end }}
{{- if .Values.nats.tls.caSecret.name }}
- name: HERALD_NATS_TLS_CA
  value: /etc/herald/nats-ca/{{ .Values.nats.tls.caSecret.key }}
{{- end }}
{{- if .Values.nats.tls.clientCertSecret }}
- name: HERALD_NATS_TLS_CERT
  value: /etc/herald/nats-client/tls.crt
- name: HERALD_NATS_TLS_KEY
  value: /etc/herald/nats-client/tls.key
{{- end }}
{{- if .Values.nats.tls.required }}
- name: HERALD_NATS_TLS_REQUIRED
  value: "true"
{{- end }}
{{- end -}}

{{- define "herald.natsVolumeMounts" -}}
{{- if .Values.nats.credentialsSecret.name }}
- {name: nats-creds, mountPath: /etc/herald/nats-creds, readOnly: true}
{{- end }}
{{- if .Values.nats.tls.caSecret.name }}
- {name: nats-ca, mountPath: /etc/herald/nats-ca, readOnly: true}
{{- end }}
{{- if .Values.nats.tls.clientCertSecret }}
- {name: nats-client, mountPath: /etc/herald/nats-client, readOnly: true}
{{- end }}
{{- end -}}

{{- define "herald.natsVolumes" -}}
{{- if .Values.nats.credentialsSecret.name }}
- name: nats-creds
  secret: {secretName: {{ .Values.nats.credentialsSecret.name }}}
{{- end }}
{{- if .Values.nats.tls.caSecret.name }}
- name: nats-ca
  secret: {secretName: {{ .Values.nats.tls.caSecret.name }}}
{{- end }}
{{- if .Values.nats.tls.clientCertSecret }}
- name: nats-client
  secret: {secretName: {{ .Values.nats.tls.clientCertSecret }}}
{{- end }}
{{- end -}}

{{/* Pod and container security: non-root, read-only root, nothing extra. */}}
{{- define "herald.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "herald.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{/* One component's Deployment: include "herald.deployment" (dict "root" . "component" "ingress" "values" .Values.ingress "args" (list ...) "ports" (list ...) "env" (list ...) "volumeMounts" (include ...) "volumes" (include ...)); volumeMounts and volumes are YAML list items, each line starting with a newline. */}}

{{/* The CA bundle (caBundle) trusted for https:// subscribers, sinks and Brokers. */}}
{{- define "herald.caBundleArgs" -}}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret -}}
{{ list (printf "--ca-bundle=/etc/herald/ca-bundle/%s" .Values.caBundle.key) | toYaml }}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{- define "herald.egressArgs" -}}
{{- $args := list -}}
{{- range .Values.egress.allow }}{{ $args = append $args (printf "--egress-allow=%s" .) }}{{ end -}}
{{- range .Values.egress.deny }}{{ $args = append $args (printf "--egress-deny=%s" .) }}{{ end -}}
{{ $args | toYaml }}
{{- end -}}

{{- define "herald.caBundleVolumeMounts" -}}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}
- {name: ca-bundle, mountPath: /etc/herald/ca-bundle, readOnly: true}
{{- end }}
{{- end -}}

{{- define "herald.caBundleVolumes" -}}
{{- if .Values.caBundle.configMap }}
- name: ca-bundle
  configMap: {name: {{ .Values.caBundle.configMap }}}
{{- else if .Values.caBundle.secret }}
- name: ca-bundle
  secret: {secretName: {{ .Values.caBundle.secret }}}
{{- end }}
{{- end -}}

{{/* The ingress's base URL, as Broker addresses start: https with ingress.tls.secret; the Service port unless it is the scheme's own. */}}
{{- define "herald.ingressUrl" -}}
{{- $scheme := ternary "https" "http" (ne .Values.ingress.tls.secret "") -}}
{{- $port := int .Values.ingress.service.port -}}
{{- $default := ternary 443 80 (eq $scheme "https") -}}
{{- printf "%s://%s-ingress.%s.svc.cluster.local" $scheme (include "herald.fullname" .) .Release.Namespace -}}
{{- if ne $port $default }}:{{ $port }}{{ end -}}
{{- end -}}
{{- define "herald.deployment" -}}
{{- $root := .root -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "herald.fullname" $root }}-{{ .component }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "herald.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  replicas: {{ .values.replicas }}
  selector:
    matchLabels:
      {{- include "herald.selector" (list $root .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "herald.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: {{ .metricsPort | quote }}
    spec:
      serviceAccountName: {{ include "herald.fullname" $root }}-{{ .component }}
      automountServiceAccountToken: true
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "herald.podSecurityContext" $root | nindent 8 }}
      containers:
        - name: {{ .component }}
          image: {{ include "herald.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            {{- include "herald.commonEnv" $root | nindent 12 }}
            - name: HERALD_METRICS_ADDR
              value: "0.0.0.0:{{ .metricsPort }}"
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            - {name: metrics, containerPort: {{ .metricsPort }}}
            {{- with .ports }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          livenessProbe:
            httpGet: {path: /healthz, port: metrics}
            periodSeconds: 10
          readinessProbe:
            httpGet: {path: /readyz, port: metrics}
            periodSeconds: 5
          resources:
            {{- toYaml .values.resources | nindent 12 }}
          securityContext:
            {{- include "herald.containerSecurityContext" $root | nindent 12 }}
          {{- with print (include "herald.natsVolumeMounts" $root) (.volumeMounts | default "") }}
          volumeMounts:
            {{- . | nindent 12 }}
          {{- end }}
      {{- with print (include "herald.natsVolumes" $root) (.volumes | default "") }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}
      {{- with .values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}
