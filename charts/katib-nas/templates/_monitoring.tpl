{{/*
"true" when the chart's ServiceMonitor is rendered (an add-on, skipped when its CRD is absent): the
server alerts read the series it scrapes, so both templates ask this one question.
*/}}
{{- define "katib-nas.serverScraped" -}}
{{- if and .Values.server.enabled (eq .Values.server.mode "fastapi") .Values.server.serviceMonitor.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/ServiceMonitor") -}}
true
{{- end }}
{{- end }}

{{/* The server's series as the ServiceMonitor labels them: the target's namespace and Service. */}}
{{- define "katib-nas.serverSeries" -}}
namespace="{{ include "katib-nas.namespace" . }}", service="{{ include "katib-nas.componentName" (dict "context" . "component" "server") }}"
{{- end }}

{{/*
Katib's trial gauge in the release namespace. Katib labels its metrics with the trial's namespace
only (no Experiment label), under prometheusRule.search.namespaceLabel once scraped. Takes a dict
with "context" and "status" (a regular expression of trial conditions; empty: every trial).
*/}}
{{- define "katib-nas.katibTrials" -}}
{{- $search := .context.Values.prometheusRule.search }}
{{- $ns := include "katib-nas.namespace" .context }}
{{- if .status -}}
katib_trials_current{ {{- $search.namespaceLabel }}="{{ $ns }}", status=~"{{ .status }}"}
{{- else -}}
katib_trials_current{ {{- $search.namespaceLabel }}="{{ $ns }}"}
{{- end }}
{{- end }}
