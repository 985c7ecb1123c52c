{{/* Chart name, cut to the 63 characters a DNS label allows. */}}
{{- define "katib-nas.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-and-chart name, cut to 63 characters. */}}
{{- define "katib-nas.fullname" -}}
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

{{- define "katib-nas.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "katib-nas.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of one component: the fullname cut so that fullname, dash and suffix fit in 63 characters.
Takes a dict with "context" (the root) and "component".
*/}}
{{- define "katib-nas.componentName" -}}
{{- $full := include "katib-nas.fullname" .context }}
{{- $max := sub 62 (len .component) | int }}
{{- printf "%s-%s" ($full | trunc $max | trimSuffix "-") .component }}
{{- end }}

{{/*
The Experiment name. Katib names trials <experiment>-<8 chars> and the suggestion
<experiment>-<algorithm>; `katib-nas validate` checks those stay within 63 characters.
*/}}
{{- define "katib-nas.experimentName" -}}
{{- default (include "katib-nas.fullname" .) .Values.experiment.name }}
{{- end }}

{{/* Selector labels: name, instance and component. Takes a dict with "context" and "component". */}}
{{- define "katib-nas.selectorLabels" -}}
app.kubernetes.io/name: {{ include "katib-nas.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Common labels. Takes a dict with "context" and "component". */}}
{{- define "katib-nas.labels" -}}
helm.sh/chart: {{ include "katib-nas.chart" .context }}
{{ include "katib-nas.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/part-of: katib-nas
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "katib-nas.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "katib-nas.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The extraction pod's ServiceAccount: its own when the chart creates them, as it alone may get pods;
otherwise the one given.
*/}}
{{- define "katib-nas.extractServiceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- printf "%s-extract" (include "katib-nas.serviceAccountName" . | trunc 54 | trimSuffix "-") }}
{{- else }}
{{- include "katib-nas.serviceAccountName" . }}
{{- end }}
{{- end }}

{{/*
The katib-nas trainer of each trial.framework: the image repository and command the chart uses when
trial.image.repository and trial.command are left empty (katib_nas_contract.flags.TRAINERS; the trainer
tests render both frameworks and run the rendered command).
*/}}
{{- define "katib-nas.trainers" -}}
pytorch:
  repository: ghcr.io/katib-nas/trainer
  command: [python, -m, katib_nas_trainer]
keras:
  repository: ghcr.io/katib-nas/trainer-keras
  command: [python, -m, katib_nas_keras]
{{- end }}

{{/* trial.image with the framework's repository when none is set (YAML; read it with fromYaml). */}}
{{- define "katib-nas.trainerImage" -}}
{{- $trainer := get (include "katib-nas.trainers" . | fromYaml) .Values.trial.framework }}
{{- $image := deepCopy .Values.trial.image }}
{{- $_ := set $image "repository" (default $trainer.repository $image.repository) }}
{{- toYaml $image }}
{{- end }}

{{/* trial.command, or the framework's when it is empty (YAML). */}}
{{- define "katib-nas.trainerCommand" -}}
{{- $trainer := get (include "katib-nas.trainers" . | fromYaml) .Values.trial.framework }}
{{- toYaml (default $trainer.command .Values.trial.command) }}
{{- end }}

{{/* An image reference from an image block: digest wins over tag, tag defaults to appVersion. */}}
{{- define "katib-nas.image" -}}
{{- $tag := default .context.Chart.AppVersion .image.tag }}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository $tag }}
{{- end }}
{{- end }}

{{/*
Annotations of every pod the chart makes (trials, extraction, batch, server): Istio's sidecar
injection as istio.sidecarInject says. A sidecar never exits, so with injection on a Job never completes.
*/}}
{{- define "katib-nas.podAnnotations" -}}
sidecar.istio.io/inject: {{ .Values.istio.sidecarInject | toString | quote }}
{{- end }}

{{/* The claim every workload mounts. */}}
{{- define "katib-nas.claimName" -}}
{{- if .Values.persistence.existingClaim }}
{{- .Values.persistence.existingClaim }}
{{- else }}
{{- include "katib-nas.componentName" (dict "context" . "component" "models") }}
{{- end }}
{{- end }}

{{/* Volumes shared by every pod: the model PVC and a writable /tmp (the root filesystem is read-only). */}}
{{- define "katib-nas.volumes" -}}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "katib-nas.claimName" . }}
{{ include "katib-nas.tmpVolume" . }}
{{- end }}

{{- define "katib-nas.volumeMounts" -}}
- name: models
  mountPath: {{ .Values.persistence.mountPath }}
{{ include "katib-nas.tmpVolumeMount" . }}
{{- end }}

{{/* The writable /tmp alone (the KServe predictor, whose model volume KServe mounts). */}}
{{- define "katib-nas.tmpVolume" -}}
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "katib-nas.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Where the best-model pointer and trial records of this Experiment live. */}}
{{- define "katib-nas.experimentDir" -}}
{{- printf "%s/%s" (.Values.persistence.mountPath | trimSuffix "/") (include "katib-nas.experimentName" .) }}
{{- end }}

{{/*
The promotion step of the server image. Takes a dict with "context" and "mode":
"watch" keeps the best-model pointer current while the Experiment runs,
"first" returns once a best model exists, "final" once the Experiment has finished.
*/}}
{{- define "katib-nas.promoteCommand" -}}
{{- $ := .context }}
- python
- -m
- katib_nas_server
- promote
- --{{ .mode }}
- --experiment={{ include "katib-nas.experimentName" $ }}
- --namespace={{ include "katib-nas.namespace" $ }}
- --model-root={{ $.Values.persistence.mountPath }}
{{- with $.Values.promotion.budget }}
{{- if not (kindIs "invalid" .latencyP99Ms) }}
- --max-latency-p99-ms={{ .latencyP99Ms }}
{{- end }}
{{- if not (kindIs "invalid" .modelBytes) }}
- --max-model-bytes={{ .modelBytes | int64 }}
{{- end }}
{{- end }}
{{- end }}

{{/* Fails with an install hint when a CRD the chart needs is missing. */}}
{{- define "katib-nas.requireAPI" -}}
{{- if not (or .context.Values.capabilities.assumeCRDs (.context.Capabilities.APIVersions.Has .api)) }}
{{- fail (printf "katib-nas: the %s API (%s) is not installed in this cluster; %s, or set capabilities.assumeCRDs=true to render offline" .what .api .hint) }}
{{- end }}
{{- end }}

{{/* Render-time guards that span several values. */}}
{{- define "katib-nas.validate" -}}
{{- $min := index .Chart.Annotations "katib-nas/min-helm-version" }}
{{- if not (semverCompare (printf ">=%s-0" $min) .Capabilities.HelmVersion.Version) }}
{{- fail (printf "katib-nas: Helm %s is too old; this chart needs Helm >= %s (run ci/install-tools.sh or upgrade helm)" .Capabilities.HelmVersion.Version $min) }}
{{- end }}
{{- $e := .Values.experiment }}
{{- if and (not $e.parameters) (not $e.nasConfig) }}
{{- fail "katib-nas: experiment.parameters is empty and experiment.nasConfig is unset; add a search space under experiment.parameters" }}
{{- end }}
{{- if and $e.parameters $e.nasConfig }}
{{- fail "katib-nas: experiment.parameters and experiment.nasConfig are both set; keep only one of them" }}
{{- end }}
{{- if gt (int $e.parallelTrialCount) (int $e.maxTrialCount) }}
{{- fail (printf "katib-nas: experiment.parallelTrialCount (%d) is larger than experiment.maxTrialCount (%d); lower parallelTrialCount" (int $e.parallelTrialCount) (int $e.maxTrialCount)) }}
{{- end }}
{{- if gt (int $e.maxFailedTrialCount) (int $e.maxTrialCount) }}
{{- fail (printf "katib-nas: experiment.maxFailedTrialCount (%d) is larger than experiment.maxTrialCount (%d); lower maxFailedTrialCount" (int $e.maxFailedTrialCount) (int $e.maxTrialCount)) }}
{{- end }}
{{- $source := $e.metricsCollector.source }}
{{- if and (eq $e.metricsCollector.kind "File") (not (and $source $source.fileSystemPath $source.fileSystemPath.path)) }}
{{- fail "katib-nas: experiment.metricsCollector.kind is File but source.fileSystemPath.path is unset; set it to an absolute file in a directory of its own, such as /var/log/katib/metrics.log" }}
{{- end }}
{{- end }}

{{/*
Trainer flags of the katib-nas early-stopping rules (median, successive-halving): each trial reads
the other trials' curves on the model PVC and stops itself, so no Katib service is involved.
Katib's own medianstop is rendered in the Experiment's earlyStopping block instead.
*/}}
{{- define "katib-nas.earlyStoppingArgs" -}}
{{- $es := .Values.experiment.earlyStopping -}}
{{- if and $es.enabled (ne $es.algorithmName "medianstop") -}}
{{- $flags := dict "start_step" "es-start-step" "min_trials_required" "es-min-trials" "reduction_factor" "es-reduction-factor" -}}
- {{ printf "--early-stopping=%s" $es.algorithmName | quote }}
- {{ printf "--es-metric=%s" .Values.experiment.objective.objectiveMetricName | quote }}
- {{ printf "--es-goal=%s" .Values.experiment.objective.type | quote }}
{{- range $es.algorithmSettings }}
{{- if hasKey $flags .name }}
- {{ printf "--%s=%s" (get $flags .name) (toString .value) | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
