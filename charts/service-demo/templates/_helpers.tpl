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
