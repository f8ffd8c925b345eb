{{/*
Names, labels and the pod template every component shares.
*/}}

{{- define "cohort.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name. Component names add "-config", "-events-headless", ...
so it is kept short enough for them (and for StatefulSet pod and PVC names).
*/}}
{{- define "cohort.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cohort.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "cohort.commonLabels" -}}
helm.sh/chart: {{ include "cohort.chart" . }}
app.kubernetes.io/name: {{ include "cohort.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cohort
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of one component: dict "root" $ "component" "config". */}}
{{- define "cohort.labels" -}}
{{ include "cohort.commonLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector labels of one component (never change: selectors are immutable). */}}
{{- define "cohort.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cohort.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* A component's resource name: dict "root" $ "component" "config". */}}
{{- define "cohort.componentName" -}}
{{- printf "%s-%s" (include "cohort.fullname" .root) .component }}
{{- end }}

{{- define "cohort.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cohort.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "cohort.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The Secret the chart creates from values: the database URL, and the bootstrap and Consul tokens
when given. Keys: database-url, bootstrap-token, consul-token.
*/}}
{{- define "cohort.secretName" -}}
{{- include "cohort.fullname" . }}
{{- end }}

{{/* The Secret holding the services' keys for the config service. */}}
{{- define "cohort.serviceKeysSecretName" -}}
{{- printf "%s-service-keys" (include "cohort.fullname" .) }}
{{- end }}

{{/* Whether the chart creates its Secret (anything that is not an existing Secret). */}}
{{- define "cohort.createSecret" -}}
{{- if or (not .Values.database.existingSecret.name) (and .Values.config.bootstrapToken (not .Values.config.bootstrapTokenExistingSecret.name)) (and .Values.consul.enabled .Values.consul.token (not .Values.consul.existingSecret.name)) }}true{{ end }}
{{- end }}

{{/* The Secret data the chart creates (shared by the Secret and its checksum). */}}
{{- define "cohort.secretData" -}}
{{- if not .Values.database.existingSecret.name }}
database-url: {{ required "database.url is required unless database.existingSecret.name is set" .Values.database.url | b64enc | quote }}
{{- end }}
{{- if and .Values.config.bootstrapToken (not .Values.config.bootstrapTokenExistingSecret.name) }}
bootstrap-token: {{ .Values.config.bootstrapToken | b64enc | quote }}
{{- end }}
{{- if and .Values.consul.enabled .Values.consul.token (not .Values.consul.existingSecret.name) }}
consul-token: {{ .Values.consul.token | b64enc | quote }}
{{- end }}
{{- end }}

{{/*
env entry for the database URL: the component's own existing Secret when it names one
(<component>.database.existingSecret, e.g. a URL with a role that may use only that component's
schema), else the shared URL, from an existing Secret or the chart's.
dict "root" $ "values" .Values.config (optional) "secretName" (optional: the chart Secret's name)
*/}}
{{- define "cohort.databaseUrlEnv" -}}
{{- $v := default dict .values }}
{{- $own := dig "database" "existingSecret" "name" "" $v -}}
- name: COHORT_DATABASE_URL
  valueFrom:
    secretKeyRef:
      {{- if $own }}
      name: {{ $own }}
      key: {{ dig "database" "existingSecret" "key" "database-url" $v }}
      {{- else if .root.Values.database.existingSecret.name }}
      name: {{ .root.Values.database.existingSecret.name }}
      key: {{ .root.Values.database.existingSecret.key }}
      {{- else }}
      name: {{ default (include "cohort.secretName" .root) .secretName }}
      key: database-url
      {{- end }}
{{- end }}

{{/* The component's shutdown grace in seconds. dict "root" $ "values" .Values.config */}}
{{- define "cohort.shutdownGrace" -}}
{{- int (default .root.Values.shutdownGraceSeconds .values.shutdownGraceSeconds) }}
{{- end }}

{{/* terminationGracePeriodSeconds: the preStop sleep, the services' grace and a margin. */}}
{{- define "cohort.terminationGrace" -}}
{{- add (int .root.Values.preStopSleepSeconds) (include "cohort.shutdownGrace" . | int) (int .root.Values.terminationGraceMarginSeconds) }}
{{- end }}

{{/* The pod-level security context every pod uses. */}}
{{- define "cohort.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* The container-level security context every container uses. */}}
{{- define "cohort.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Consul registration env, when enabled. dict "root" $ "component" "config" */}}
{{- define "cohort.consulEnv" -}}
{{- $c := .root.Values.consul }}
{{- if $c.enabled }}
{{- if not $c.httpAddr }}
- name: HOST_IP
  valueFrom:
    fieldRef:
      fieldPath: status.hostIP
{{- end }}
- name: COHORT_CONSUL_HTTP_ADDR
  value: {{ default (printf "http://$(HOST_IP):%d" (int $c.port)) $c.httpAddr | quote }}
# The name the evaluation service looks config and events up by.
- name: COHORT_CONSUL_SERVICE_NAME
  value: {{ printf "cohort-%s" .component | quote }}
- name: COHORT_CONSUL_SERVICE_ADDRESS
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- if or $c.existingSecret.name $c.token }}
- name: COHORT_CONSUL_TOKEN
  valueFrom:
    secretKeyRef:
      {{- if $c.existingSecret.name }}
      name: {{ $c.existingSecret.name }}
      key: {{ $c.existingSecret.key }}
      {{- else }}
      name: {{ include "cohort.secretName" .root }}
      key: consul-token
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* gRPC probe timings: dict "port" 50051 "service" "..." "timing" .values.probes.liveness */}}
{{- define "cohort.grpcProbe" -}}
grpc:
  port: {{ .port }}
  service: {{ .service | quote }}
{{- with .timing }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* An HTTPS probe of the admin port: dict "path" "/healthz" "timing" .values.probes.liveness */}}
{{- define "cohort.httpsProbe" -}}
httpGet:
  path: {{ .path }}
  port: metrics
  scheme: HTTPS
{{- with .timing }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
The Secret with the TLS certificate (tls.crt, tls.key, ca.crt): tls.existingSecret, else the one
cert-manager writes. Also the templates' guard for what the schema checks.
*/}}
{{- define "cohort.tlsSecretName" -}}
{{- $t := .Values.tls }}
{{- if and $t.existingSecret $t.certManager.enabled }}
{{- fail "tls: set tls.existingSecret or tls.certManager.enabled, not both" }}
{{- else if $t.existingSecret }}
{{- $t.existingSecret }}
{{- else if $t.certManager.enabled }}
{{- if not $t.certManager.issuerRef.name }}
{{- fail "tls.certManager.enabled needs tls.certManager.issuerRef.name (the cert-manager Issuer or ClusterIssuer that signs the certificate)" }}
{{- end }}
{{- printf "%s-tls" (include "cohort.fullname" .) }}
{{- else }}
{{- fail "tls.enabled needs a certificate: set tls.existingSecret or tls.certManager.enabled" }}
{{- end }}
{{- end }}

{{/* The URL scheme components call each other with. */}}
{{- define "cohort.scheme" -}}
{{- if .Values.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* This release's endpoint of a component: dict "root" $ "component" "config" "port" 50051 */}}
{{- define "cohort.peerEndpoint" -}}
{{- printf "%s://%s:%d" (include "cohort.scheme" .root) (include "cohort.componentName" .) (int .port) }}
{{- end }}

{{/* Where the TLS Secret is mounted; cohort.tlsEnv names its files. */}}
{{- define "cohort.tlsDir" -}}
/etc/cohort/tls
{{- end }}

{{/* TLS env, when enabled. */}}
{{- define "cohort.tlsEnv" -}}
{{- if .Values.tls.enabled }}
{{- $dir := include "cohort.tlsDir" . -}}
- name: COHORT_TLS_CERT
  value: {{ printf "%s/tls.crt" $dir }}
- name: COHORT_TLS_KEY
  value: {{ printf "%s/tls.key" $dir }}
# Peers' server certificates, and the client certificates of callers, chain to the one CA.
- name: COHORT_TLS_CA
  value: {{ printf "%s/ca.crt" $dir }}
- name: COHORT_TLS_CLIENT_CA
  value: {{ printf "%s/ca.crt" $dir }}
- name: COHORT_TLS_CLIENT_AUTH
  value: {{ .Values.tls.clientAuth | quote }}
{{- end }}
{{- end }}

{{/*
The PostgreSQL server's CA (database.ca): mounted at cohort.databaseCaDir in every pod that
connects, for the URL's sslrootcert=<dir>/<key>. Only the key is projected (a Secret written by
cert-manager also holds tls.key), as a directory and never with subPath, so the file follows the
Secret (the services read it at start-up: a restart picks up a rotated CA). Also the templates'
guard for what the schema checks.
*/}}
{{- define "cohort.databaseCaDir" -}}
/etc/cohort/database-ca
{{- end }}

{{/* Whether database.ca names a Secret or a ConfigMap. */}}
{{- define "cohort.databaseCaEnabled" -}}
{{- $ca := .Values.database.ca }}
{{- if and $ca.secretName $ca.configMapName }}
{{- fail "database.ca: set secretName or configMapName, not both" }}
{{- end }}
{{- if or $ca.secretName $ca.configMapName }}true{{ end }}
{{- end }}

{{/* The database CA volume (a list entry), when database.ca is set. */}}
{{- define "cohort.databaseCaVolume" -}}
{{- if include "cohort.databaseCaEnabled" . }}
{{- $ca := .Values.database.ca }}
{{- $key := required "database.ca.key is required with database.ca.secretName or configMapName" $ca.key -}}
- name: database-ca
  {{- if $ca.secretName }}
  secret:
    secretName: {{ $ca.secretName }}
  {{- else }}
  configMap:
    name: {{ $ca.configMapName }}
  {{- end }}
    items:
      - key: {{ $key }}
        path: {{ $key }}
{{- end }}
{{- end }}

{{/* The database CA volumeMount (a list entry), when database.ca is set. */}}
{{- define "cohort.databaseCaVolumeMount" -}}
{{- if include "cohort.databaseCaEnabled" . -}}
- name: database-ca
  mountPath: {{ include "cohort.databaseCaDir" . }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
The pod template of a component. Parameters (a dict):
  root        the top-level context ($)
  component   config | evaluation | events | analysis | console
  values      the component's values (.Values.config, ...)
  grpcPort    the gRPC port
  httpPort    the HTTP port
  grpcService the fully qualified gRPC service name readiness reports on
  useDatabase whether the component gets the database URL (and the database CA, database.ca)
  noConsul    true for a component that never registers in Consul (the console)
  env         extra env entries (YAML list text), or ""
  volumeMounts extra volumeMounts (YAML list text), or ""
*/}}
{{- define "cohort.podTemplate" -}}
{{- $root := .root }}
{{- $v := .values }}
{{- $ctx := dict "root" $root "component" .component -}}
metadata:
  labels:
    {{- include "cohort.labels" $ctx | nindent 4 }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- /* The console reads nothing from the chart's Secret: no roll when it changes. */}}
  {{- $secretUsed := and (include "cohort.createSecret" $root) (or .useDatabase (not .noConsul)) }}
  {{- if or $secretUsed $root.Values.podAnnotations }}
  annotations:
    {{- if $secretUsed }}
    # A change of the chart's Secret rolls the pods (an existing Secret is not watched).
    checksum/secret: {{ include "cohort.secretData" $root | sha256sum }}
    {{- end }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
spec:
  serviceAccountName: {{ include "cohort.serviceAccountName" $root }}
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  # Longer than the service's own shutdown grace (COHORT_SHUTDOWN_GRACE) plus the preStop sleep.
  terminationGracePeriodSeconds: {{ include "cohort.terminationGrace" (dict "root" $root "values" $v) }}
  securityContext:
    {{- include "cohort.podSecurityContext" $root | nindent 4 }}
  containers:
    - name: {{ .component }}
      image: {{ include "cohort.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command: ["/usr/local/bin/cohort-{{ .component }}"]
      ports:
        - name: grpc
          containerPort: {{ .grpcPort }}
          protocol: TCP
        - name: http
          containerPort: {{ .httpPort }}
          protocol: TCP
        - name: metrics
          containerPort: 9090
          protocol: TCP
      env:
        - name: COHORT_GRPC_ADDR
          value: {{ printf "%s:%d" (include "cohort.hostPort" $root.Values.listenAddress) (int .grpcPort) | quote }}
        - name: COHORT_HTTP_ADDR
          value: {{ printf "%s:%d" (include "cohort.hostPort" $root.Values.listenAddress) (int .httpPort) | quote }}
        - name: COHORT_ADMIN_ADDR
          value: {{ printf "%s:9090" (include "cohort.hostPort" $root.Values.listenAddress) | quote }}
        - name: COHORT_LOG_FORMAT
          value: {{ $root.Values.logFormat | quote }}
        - name: RUST_LOG
          value: {{ default $root.Values.logLevel $v.logLevel | quote }}
        - name: COHORT_SHUTDOWN_GRACE
          value: {{ printf "%ss" (include "cohort.shutdownGrace" (dict "root" $root "values" $v)) | quote }}
        {{- if .useDatabase }}
        {{- include "cohort.databaseUrlEnv" (dict "root" $root "values" $v) | nindent 8 }}
        - name: COHORT_DATABASE_MAX_CONNECTIONS
          value: {{ default $root.Values.database.maxConnections $v.databaseMaxConnections | quote }}
        {{- end }}
        {{- with .env }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- with include "cohort.tlsEnv" $root | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- if not .noConsul }}
        {{- with include "cohort.consulEnv" $ctx | trim }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- end }}
        {{- range $name, $value := $v.settings }}
        - name: {{ $name }}
          value: {{ $value | quote }}
        {{- end }}
        {{- with $v.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- if $root.Values.tls.enabled }}
      # The kubelet's gRPC probes cannot speak TLS: the admin port's /healthz and /readyz over
      # HTTPS instead (the kubelet does not verify the certificate, the admin port asks for no
      # client certificate). /readyz reports what readiness on the gRPC health service would.
      startupProbe:
        {{- include "cohort.httpsProbe" (dict "path" "/healthz" "timing" $v.probes.startup) | nindent 8 }}
      livenessProbe:
        {{- include "cohort.httpsProbe" (dict "path" "/healthz" "timing" $v.probes.liveness) | nindent 8 }}
      readinessProbe:
        {{- include "cohort.httpsProbe" (dict "path" "/readyz" "timing" $v.probes.readiness) | nindent 8 }}
      {{- else }}
      # gRPC health: readiness asks for the service itself (SERVING only once it can work),
      # liveness and start-up for the server as a whole ("").
      startupProbe:
        {{- include "cohort.grpcProbe" (dict "port" .grpcPort "service" "" "timing" $v.probes.startup) | nindent 8 }}
      livenessProbe:
        {{- include "cohort.grpcProbe" (dict "port" .grpcPort "service" "" "timing" $v.probes.liveness) | nindent 8 }}
      readinessProbe:
        {{- include "cohort.grpcProbe" (dict "port" .grpcPort "service" .grpcService "timing" $v.probes.readiness) | nindent 8 }}
      {{- end }}
      {{- if gt (int $root.Values.preStopSleepSeconds) 0 }}
      lifecycle:
        preStop:
          sleep:
            seconds: {{ $root.Values.preStopSleepSeconds }}
      {{- end }}
      resources:
        {{- toYaml $v.resources | nindent 8 }}
      securityContext:
        {{- include "cohort.containerSecurityContext" $root | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if $root.Values.tls.enabled }}
        # The whole directory, never subPath: a subPath mount would keep the first certificate
        # when the Secret is renewed.
        - name: tls
          mountPath: {{ include "cohort.tlsDir" $root }}
          readOnly: true
        {{- end }}
        {{- if .useDatabase }}
        {{- with include "cohort.databaseCaVolumeMount" $root | trim }}
        # The PostgreSQL server's CA, for sslrootcert= in the database URL (database.ca).
        {{- . | nindent 8 }}
        {{- end }}
        {{- end }}
        {{- with .volumeMounts }}
        {{- . | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- if $root.Values.tls.enabled }}
    # Renewals reach the running pods in place (no checksum annotation: nothing restarts).
    - name: tls
      secret:
        secretName: {{ include "cohort.tlsSecretName" $root }}
    {{- end }}
    {{- if .useDatabase }}
    {{- with include "cohort.databaseCaVolume" $root | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- end }}
  {{- with $v.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $v.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  topologySpreadConstraints:
    {{- if $v.topologySpreadConstraints }}
    {{- toYaml $v.topologySpreadConstraints | nindent 4 }}
    {{- else }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "cohort.selectorLabels" $ctx | nindent 10 }}
    {{- end }}
{{- end }}

{{/* A listen host for host:port: IPv6 addresses go in brackets. */}}
{{- define "cohort.hostPort" -}}
{{- if contains ":" . }}{{ printf "[%s]" . }}{{ else }}{{ . }}{{ end }}
{{- end }}

{{/*
The Service of a component. dict "root" $ "component" "config" "values" .Values.config
"grpcPort" 50051 "httpPort" 8081
*/}}
{{- define "cohort.service" -}}
{{- $ctx := dict "root" .root "component" .component }}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "cohort.componentName" $ctx }}
  labels:
    {{- include "cohort.labels" $ctx | nindent 4 }}
  {{- with .values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ .values.service.type }}
  selector:
    {{- include "cohort.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: grpc
      port: {{ .grpcPort }}
      targetPort: grpc
      protocol: TCP
      appProtocol: grpc
    - name: http
      port: {{ .httpPort }}
      targetPort: http
      protocol: TCP
      appProtocol: http
    - name: metrics
      port: 9090
      targetPort: metrics
      protocol: TCP
      appProtocol: http
{{- end }}

{{/* The PodDisruptionBudget of a component, when enabled. */}}
{{- define "cohort.pdb" -}}
{{- $ctx := dict "root" .root "component" .component }}
{{- $pdb := .values.podDisruptionBudget }}
{{- if $pdb.enabled }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "cohort.componentName" $ctx }}
  labels:
    {{- include "cohort.labels" $ctx | nindent 4 }}
spec:
  {{- if hasKey $pdb "minAvailable" }}
  minAvailable: {{ $pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ $pdb.maxUnavailable }}
  {{- end }}
  # Pods that never became ready may be evicted anyway (a crash loop must not block a drain).
  unhealthyPodEvictionPolicy: AlwaysAllow
  selector:
    matchLabels:
      {{- include "cohort.selectorLabels" $ctx | nindent 6 }}
{{- end }}
{{- end }}

{{/* The HorizontalPodAutoscaler of a component, when enabled. "kind": Deployment | StatefulSet */}}
{{- define "cohort.hpa" -}}
{{- $ctx := dict "root" .root "component" .component }}
{{- $a := .values.autoscaling }}
{{- if $a.enabled }}
{{- if lt (int $a.maxReplicas) (int $a.minReplicas) }}
{{- fail (printf "%s.autoscaling.maxReplicas (%d) must be at least minReplicas (%d)" .component (int $a.maxReplicas) (int $a.minReplicas)) }}
{{- end }}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "cohort.componentName" $ctx }}
  labels:
    {{- include "cohort.labels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: {{ .kind }}
    name: {{ include "cohort.componentName" $ctx }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
  {{- with $a.scaleDownStabilizationSeconds }}
  behavior:
    scaleDown:
      stabilizationWindowSeconds: {{ . }}
      policies:
        - type: Pods
          value: 1
          periodSeconds: 300
  {{- end }}
{{- end }}
{{- end }}
