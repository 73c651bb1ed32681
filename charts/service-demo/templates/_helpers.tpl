{{/* The name of every object: the release name, which Argo CD sets to the application's. */}}
{{- define "service-demo.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels that never change for a pod: the Deployment's selector. */}}
{{- define "service-demo.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Kubernetes' recommended labels. */}}
{{- define "service-demo.labels" -}}
{{ include "service-demo.selectorLabels" . }}
app.kubernetes.io/version: {{ include "service-demo.version" . | quote }}
app.kubernetes.io/component: api
app.kubernetes.io/part-of: service-demo
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The version the pod reports: the image tag, else the chart's appVersion. */}}
{{- define "service-demo.version" -}}
{{- .Values.image.tag | default .Chart.AppVersion | trunc 63 -}}
{{- end -}}

{{/* repository@digest when a digest is set, so a moved tag cannot change what runs; else repository:tag. */}}
{{- define "service-demo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else if .Values.image.tag -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- else -}}
{{- fail "image.tag or image.digest must be set: the pipeline writes them into gitops/values/<env>/service-demo.yaml" -}}
{{- end -}}
{{- end -}}

{{/* DATABASE_URL from the Secret (never a value), for the service and the migration Job. */}}
{{- define "service-demo.databaseEnv" -}}
{{- with .Values.database.existingSecret }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.database.secretKey | quote }}
- name: DATABASE_POOL_SIZE
  value: {{ $.Values.database.poolSize | quote }}
{{- end }}
{{- end -}}

{{/* The restricted Pod Security Standard, for every pod the chart makes. */}}
{{- define "service-demo.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "service-demo.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The environment's host: ingress.host, else <namespace>.<ingress.domain> (pr-7.localhost, preprod.localhost). */}}
{{- define "service-demo.host" -}}
{{- .Values.ingress.host | default (printf "%s.%s" .Release.Namespace .Values.ingress.domain) -}}
{{- end -}}
