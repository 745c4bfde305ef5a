{{/* ================================================================ names */}}

{{- define "kreide.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Release-scoped base name; objects append "-<component>" and headless Services
"-<component>-headless", so it is cut to 40 characters to keep those within
the 63 of a DNS label.
*/}}
{{- define "kreide.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "kreide.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kreide.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kreide.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Objects the chart manages itself. */}}
{{- define "kreide.secretName" -}}{{ include "kreide.fullname" . }}{{- end -}}
{{- define "kreide.jwtSecretName" -}}{{ include "kreide.fullname" . }}-jwt{{- end -}}
{{- define "kreide.identitySecretName" -}}{{ include "kreide.fullname" . }}-identity{{- end -}}
{{- define "kreide.hookSecretName" -}}{{ include "kreide.fullname" . }}-migrate{{- end -}}
{{- define "kreide.configMapName" -}}{{ include "kreide.fullname" . }}-config{{- end -}}

{{/* =============================================================== labels */}}

{{- define "kreide.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kreide.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kreide.labels" -}}
helm.sh/chart: {{ include "kreide.chart" . }}
{{ include "kreide.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kreide
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels for one component; call with (dict "root" $ "component" "gateway"). */}}
{{- define "kreide.componentLabels" -}}
{{ include "kreide.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "kreide.componentSelectorLabels" -}}
{{ include "kreide.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* ================================================================ image */}}

{{- define "kreide.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* ======================================================= service registry */}}

{{/*
The RPC services this chart knows, in start order. Adding a service means
adding its name here, a values block shaped like `identity`, and a template
file that includes "kreide.rpcService".
*/}}
{{- define "kreide.rpcServiceNames" -}}
identity,messaging
{{- end -}}

{{/* Names of the RPC services that are enabled, as a JSON list. */}}
{{- define "kreide.enabledRpcServices" -}}
{{- $out := list -}}
{{- range $name := splitList "," (include "kreide.rpcServiceNames" .) -}}
{{- if (index $.Values $name).enabled -}}
{{- $out = append $out $name -}}
{{- end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{- define "kreide.headlessServiceName" -}}
{{- printf "%s-%s-headless" (include "kreide.fullname" .root) .name -}}
{{- end -}}

{{/* ========================================================= configuration */}}

{{/* How the database is reached: "url" (a URI in a Secret) or "host". */}}
{{- define "kreide.databaseMode" -}}
{{- if or .Values.postgresql.url (and .Values.postgresql.existingSecret .Values.postgresql.existingSecretUrlKey) -}}
url
{{- else if .Values.postgresql.host -}}
host
{{- else -}}
{{- fail "postgresql: set url, host, or existingSecret with existingSecretUrlKey" -}}
{{- end -}}
{{- end -}}

{{/* The password-less libpq URI built from host/port/database/user. */}}
{{- define "kreide.databaseHostUrl" -}}
{{- $pg := .Values.postgresql -}}
{{- printf "postgresql://%s@%s:%d/%s?sslmode=%s" (urlquery $pg.user) $pg.host (int $pg.port) (urlquery $pg.database) $pg.sslmode -}}
{{- end -}}

{{/* True ("true") when host mode has a password to pass as PGPASSWORD. */}}
{{- define "kreide.databaseHasPassword" -}}
{{- if and (eq (include "kreide.databaseMode" .) "host") (or .Values.postgresql.password .Values.postgresql.existingSecret) -}}
true
{{- end -}}
{{- end -}}

{{/*
The internal HMAC keys: the given value, else the key an earlier install
generated (kept so upgrades do not break running replicas), else a new
256-bit key.
*/}}
{{- define "kreide.internalKeys" -}}
{{- if .Values.internalKeys.value -}}
{{- .Values.internalKeys.value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "kreide.secretName" .) -}}
{{- $old := dig "data" "internal-keys" "" ($existing | default dict) -}}
{{- if $old -}}
{{- b64dec $old -}}
{{- else -}}
{{- printf "k1:%s" (randBytes 32) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The pepper of one-time codes: the given value, else the one an earlier
install generated (kept so outstanding codes stay valid), else 48 new random
bytes (base64).
*/}}
{{- define "kreide.codePepper" -}}
{{- $p := .Values.identity.codePepper -}}
{{- if $p.value -}}
{{- $p.value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "kreide.identitySecretName" .) -}}
{{- $old := dig "data" "code-pepper" "" ($existing | default dict) -}}
{{- if $old -}}
{{- b64dec $old -}}
{{- else -}}
{{- randBytes 48 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The Secret and key holding the internal keys, as "name/key". */}}
{{- define "kreide.internalKeysRef" -}}
{{- if .Values.internalKeys.existingSecret -}}
{{- printf "%s/%s" .Values.internalKeys.existingSecret .Values.internalKeys.existingSecretKey -}}
{{- else -}}
{{- printf "%s/internal-keys" (include "kreide.secretName" .) -}}
{{- end -}}
{{- end -}}

{{- define "kreide.databaseUrlRef" -}}
{{- if .Values.postgresql.url -}}
{{- printf "%s/database-url" (include "kreide.secretName" .) -}}
{{- else -}}
{{- printf "%s/%s" .Values.postgresql.existingSecret .Values.postgresql.existingSecretUrlKey -}}
{{- end -}}
{{- end -}}

{{- define "kreide.databasePasswordRef" -}}
{{- if .Values.postgresql.password -}}
{{- printf "%s/database-password" (include "kreide.secretName" .) -}}
{{- else -}}
{{- printf "%s/%s" .Values.postgresql.existingSecret .Values.postgresql.existingSecretPasswordKey -}}
{{- end -}}
{{- end -}}

{{- define "kreide.redisUrlRef" -}}
{{- if .Values.redis.existingSecret -}}
{{- printf "%s/%s" .Values.redis.existingSecret .Values.redis.existingSecretKey -}}
{{- else if .Values.redis.url -}}
{{- printf "%s/redis-url" (include "kreide.secretName" .) -}}
{{- end -}}
{{- end -}}

{{/* Where secret files are mounted in every daemon. */}}
{{- define "kreide.secretsDir" -}}/etc/kreide/secrets{{- end -}}

{{/*
The projected volume of secret files shared by the daemons: internal keys,
database URI (url mode) and Redis URL, each from the chart's Secret or one the
operator manages.
*/}}
{{- define "kreide.secretsVolume" -}}
{{- $refs := list (list (include "kreide.internalKeysRef" .) "internal-keys") -}}
{{- if eq (include "kreide.databaseMode" .) "url" -}}
{{- $refs = append $refs (list (include "kreide.databaseUrlRef" .) "database-url") -}}
{{- end -}}
{{- with include "kreide.redisUrlRef" . -}}
{{- $refs = append $refs (list . "redis-url") -}}
{{- end -}}
- name: secrets
  projected:
    # 0440: readable by the pod's fsGroup only.
    defaultMode: 288
    sources:
{{- range $refs }}
{{- $ref := index . 0 | splitList "/" }}
      - secret:
          name: {{ index $ref 0 }}
          items:
            - key: {{ index $ref 1 }}
              path: {{ index . 1 }}
{{- end }}
{{- end -}}

{{/* Environment pointing the daemons at the secret files. */}}
{{- define "kreide.secretsEnv" -}}
- name: KREIDE_INTERNAL_KEYS_FILE
  value: {{ include "kreide.secretsDir" . }}/internal-keys
{{- if eq (include "kreide.databaseMode" .) "url" }}
- name: KREIDE_DATABASE_URL_FILE
  value: {{ include "kreide.secretsDir" . }}/database-url
{{- end }}
{{- if include "kreide.redisUrlRef" . }}
- name: KREIDE_REDIS_URL_FILE
  value: {{ include "kreide.secretsDir" . }}/redis-url
{{- end }}
{{- with include "kreide.databasePasswordEnv" (dict "root" . "secret" (include "kreide.databasePasswordRef" .)) }}
{{ . }}
{{- end }}
{{- end -}}

{{/*
libpq reads PGPASSWORD when the URI carries no password (PostgreSQL manual,
"Environment Variables"), so the password never has to be URI-encoded.
Call with (dict "root" $ "secret" "name/key").
*/}}
{{- define "kreide.databasePasswordEnv" -}}
{{- if include "kreide.databaseHasPassword" .root -}}
{{- $ref := splitList "/" .secret -}}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ index $ref 0 }}
      key: {{ index $ref 1 }}
{{- end }}
{{- end -}}

{{/* A values map {NAME: value} as container env entries, sorted by name. */}}
{{- define "kreide.envMap" -}}
{{- range $k := keys . | sortAlpha }}
- name: {{ $k }}
  value: {{ index $ $k | toString | quote }}
{{- end }}
{{- end -}}

{{/* ===================================================== pod building blocks */}}

{{- define "kreide.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The scratch directory a read-only root filesystem leaves writable. */}}
{{- define "kreide.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{- end -}}

{{/*
One daemon: Deployment, Service, PodDisruptionBudget and (optionally)
HorizontalPodAutoscaler. Call with a dict:
  root       the top-level context ($)
  component  short name ("gateway", "identity")
  values     the component's values block
  ports      list of (dict "name" "http" "port" 8080)
  env        list of extra container env entries
  liveness   probe handler, e.g. (dict "tcpSocket" (dict "port" "rpc"))
  readiness  probe handler
  volumes    extra pod volumes (list), optional
  mounts     extra container volumeMounts (list), optional
  service    dict: "headless" true, or "type"/"port"/"annotations"
*/}}
{{- define "kreide.daemon" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $name := printf "%s-%s" (include "kreide.fullname" $root) .component -}}
{{- $ctx := dict "root" $root "component" .component -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kreide.componentLabels" $ctx | nindent 4 }}
spec:
  {{- if not $v.autoscaling.enabled }}
  replicas: {{ $v.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  selector:
    matchLabels:
      {{- include "kreide.componentSelectorLabels" $ctx | nindent 6 }}
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxUnavailable: 0
      maxSurge: 1
  template:
    metadata:
      labels:
        {{- include "kreide.componentSelectorLabels" $ctx | nindent 8 }}
        {{- with $v.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- with $v.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "kreide.serviceAccountName" $root }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- include "kreide.podSecurity" $root | nindent 6 }}
      {{- with $v.priorityClassName }}
      priorityClassName: {{ . }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "kreide.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["/usr/bin/kreide-{{ .component }}"]
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          ports:
            {{- range .ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ include "kreide.configMapName" $root }}
          env:
            {{- include "kreide.secretsEnv" $root | nindent 12 }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $v.extraEnv }}
            {{- include "kreide.envMap" . | nindent 12 }}
            {{- end }}
          livenessProbe:
            {{- toYaml .liveness | nindent 12 }}
            {{- toYaml $v.livenessProbe | nindent 12 }}
          readinessProbe:
            {{- toYaml .readiness | nindent 12 }}
            {{- toYaml $v.readinessProbe | nindent 12 }}
          resources:
            {{- toYaml $v.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: secrets
              mountPath: {{ include "kreide.secretsDir" $root }}
              readOnly: true
            {{- with .mounts }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
      volumes:
        {{- include "kreide.tmpVolume" $root | nindent 8 }}
        {{- include "kreide.secretsVolume" $root | nindent 8 }}
        {{- with .volumes }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- with $v.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $v.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
---
apiVersion: v1
kind: Service
metadata:
  {{- if .service.headless }}
  name: {{ include "kreide.headlessServiceName" (dict "root" $root "name" .component) }}
  {{- else }}
  name: {{ $name }}
  {{- end }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kreide.componentLabels" $ctx | nindent 4 }}
  {{- with .service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- if .service.headless }}
  # Headless: DNS answers with every ready pod, so callers reach all replicas.
  clusterIP: None
  {{- else }}
  type: {{ .service.type }}
  {{- end }}
  selector:
    {{- include "kreide.componentSelectorLabels" $ctx | nindent 4 }}
  ports:
    {{- $svcPort := .service.port }}
    {{- range .ports }}
    - name: {{ .name }}
      port: {{ $svcPort | default .port }}
      targetPort: {{ .name }}
      protocol: TCP
    {{- end }}
{{- if $v.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kreide.componentLabels" $ctx | nindent 4 }}
spec:
  maxUnavailable: {{ $v.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "kreide.componentSelectorLabels" $ctx | nindent 6 }}
{{- end }}
{{- if $v.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kreide.componentLabels" $ctx | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $v.autoscaling.minReplicas }}
  maxReplicas: {{ $v.autoscaling.maxReplicas }}
  metrics:
    {{- with $v.autoscaling.targetCPUUtilizationPercentage }}
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
    {{- with $v.autoscaling.targetMemoryUtilizationPercentage }}
    - type: Resource
      resource:
        name: memory
        target:
          type: Utilization
          averageUtilization: {{ . }}
    {{- end }}
{{- end }}
{{- end -}}

{{/*
The migration hook Job of one service: runs "kreide-<name> migrate" before
install and upgrade. It cannot use the ConfigMap or the chart's main Secret,
which do not exist yet during pre-install, so it carries its own settings and
reads database credentials from the hook Secret or the operator's Secret.
Call with (dict "root" $ "name" "identity").
*/}}
{{- define "kreide.migrateJob" -}}
{{- $root := .root -}}
{{- $ctx := dict "root" $root "component" (printf "%s-migrate" .name) -}}
{{- $mode := include "kreide.databaseMode" $root -}}
{{- $pg := $root.Values.postgresql -}}
{{- $job := $root.Values.migrations.job -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ printf "%s-%s-migrate" (include "kreide.fullname" $root) .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "kreide.componentLabels" $ctx | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "0"
    # A failed Job stays for inspection until the next attempt replaces it.
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $job.backoffLimit }}
  activeDeadlineSeconds: {{ $job.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "kreide.componentSelectorLabels" $ctx | nindent 8 }}
    spec:
      restartPolicy: Never
      {{- if not $root.Values.serviceAccount.create }}
      serviceAccountName: {{ include "kreide.serviceAccountName" $root }}
      {{- end }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- include "kreide.podSecurity" $root | nindent 6 }}
      containers:
        - name: migrate
          image: {{ include "kreide.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          command: ["/usr/bin/kreide-{{ .name }}", "migrate"]
          securityContext:
            {{- toYaml $root.Values.securityContext | nindent 12 }}
          env:
            - name: KREIDE_LOG_LEVEL
              value: {{ $root.Values.config.logLevel | quote }}
            - name: KREIDE_MIGRATIONS_DIR
              value: /usr/share/kreide/migrations/{{ .name }}
            {{- if eq $mode "url" }}
            - name: KREIDE_DATABASE_URL_FILE
              value: {{ include "kreide.secretsDir" $root }}/database-url
            {{- else }}
            - name: KREIDE_DATABASE_URL
              value: {{ include "kreide.databaseHostUrl" $root | quote }}
            {{- end }}
            {{- $pwRef := printf "%s/database-password" (include "kreide.hookSecretName" $root) }}
            {{- if not $pg.password }}
            {{- $pwRef = include "kreide.databasePasswordRef" $root }}
            {{- end }}
            {{- with include "kreide.databasePasswordEnv" (dict "root" $root "secret" $pwRef) }}
            {{- . | nindent 12 }}
            {{- end }}
          resources:
            {{- toYaml $job.resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            {{- if eq $mode "url" }}
            - name: secrets
              mountPath: {{ include "kreide.secretsDir" $root }}
              readOnly: true
            {{- end }}
      volumes:
        {{- include "kreide.tmpVolume" $root | nindent 8 }}
        {{- if eq $mode "url" }}
        {{- $urlRef := printf "%s/database-url" (include "kreide.hookSecretName" $root) }}
        {{- if not $pg.url }}
        {{- $urlRef = include "kreide.databaseUrlRef" $root }}
        {{- end }}
        {{- $ref := splitList "/" $urlRef }}
        - name: secrets
          secret:
            secretName: {{ index $ref 0 }}
            defaultMode: 288
            items:
              - key: {{ index $ref 1 }}
                path: database-url
        {{- end }}
{{- end -}}

{{/*
One RPC service: its daemon (headless Service, tcpSocket probes on the RPC
port) and its migration Job. Call with (dict "root" $ "name" "identity"); the
values block .Values.<name> needs enabled, rpcPort, workers and the daemon
settings shared with identity. Optional "env", "volumes" and "mounts" (lists)
add what only this service needs, such as a Secret of its own.
*/}}
{{- define "kreide.rpcService" -}}
{{- $root := .root -}}
{{- $v := index $root.Values .name -}}
{{- if $v.enabled -}}
{{- $port := int $v.rpcPort -}}
{{- $env := list
      (dict "name" (printf "KREIDE_%s_LISTEN" (upper .name)) "value" (printf "tcp://0.0.0.0:%d" $port))
      (dict "name" "KREIDE_WORKERS" "value" (toString $v.workers))
      (dict "name" "KREIDE_MIGRATIONS_DIR" "value" (printf "/usr/share/kreide/migrations/%s" .name)) -}}
{{- $env = concat $env (.env | default list) -}}
{{- $probe := dict "tcpSocket" (dict "port" "rpc") -}}
{{- include "kreide.daemon" (dict
      "root" $root "component" .name "values" $v
      "ports" (list (dict "name" "rpc" "port" $port))
      "env" $env "liveness" $probe "readiness" $probe
      "volumes" (.volumes | default list) "mounts" (.mounts | default list)
      "service" (dict "headless" true)) }}
{{- if $root.Values.migrations.job.enabled }}
---
{{ include "kreide.migrateJob" (dict "root" $root "name" .name) }}
{{- end }}
{{- end -}}
{{- end -}}
