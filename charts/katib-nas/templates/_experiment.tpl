{{/*
Experiment helpers.

metricStrategies: one entry per metric, so Katib's UI and currentOptimalTrial summarise each metric
in its own direction. Katib's webhook gives every metric the user left out the objective's
direction (experiment_defaults.go setDefaultObjective), so `loss` would be kept at its max under a
maximize objective. Here a metric the user left out gets `min` when its name says lower is better
(loss, error, mse, ...), `max` when it says higher is better (accuracy, auc, f1, ...), and the
objective's direction otherwise, as Katib would.
*/}}
{{- define "katib-nas.metricStrategies" -}}
{{- $o := .Values.experiment.objective }}
{{- $given := dict }}
{{- range $o.metricStrategies }}
{{- $_ := set $given .name .value }}
{{- end }}
{{- $objective := ternary "max" "min" (eq $o.type "maximize") }}
{{- $out := list }}
{{- range $o.metricStrategies }}
{{- $out = append $out (dict "name" .name "value" .value) }}
{{- end }}
{{- range (prepend ($o.additionalMetricNames | default list) $o.objectiveMetricName) }}
{{- if not (hasKey $given .) }}
{{- $_ := set $given . true }}
{{- $name := lower . }}
{{- $value := $objective }}
{{- if ne . $o.objectiveMetricName }}
{{- if regexMatch "loss|err|mse|mae|perplexity|latency|duration|seconds|time|cost|regret" $name }}
{{- $value = "min" }}
{{- else if regexMatch "acc|auc|f1|precision|recall|score|iou|bleu|reward" $name }}
{{- $value = "max" }}
{{- end }}
{{- end }}
{{- $out = append $out (dict "name" . "value" $value) }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
"true" when trial pods mark their Trial EarlyStopped in Katib: a katib-nas rule (median or
successive-halving) stops trials inside the trainer, and the chart may create the RBAC for it.
*/}}
{{- define "katib-nas.trialMarksEarlyStops" -}}
{{- $s := .Values.experiment.earlyStopping }}
{{- if and $s.enabled (has $s.algorithmName (list "median" "successive-halving")) .Values.rbac.create }}true{{ end }}
{{- end }}

{{/*
One of the user's trial arguments (trial.args, trial.extraArgs) as the trial container gets it.
Katib's StdOut, File and TensorFlowEvent collectors run the container's command and arguments
joined into one `sh -c` string (pkg/webhook/v1beta1/pod/utils.go wrapWorkerContainer), so an
argument Katib fills with spaces or brackets (an ENAS architecture such as [[1], [0, 1]]) would be
split and globbed by the shell. Double quotes keep it one word and leave the shell's `$` expansion
as it was; an argument with a double quote of its own is the user's quoting and stays as written.
Takes a dict with "context" and "arg".
*/}}
{{- define "katib-nas.trialArg" -}}
{{- $wrapped := has .context.Values.experiment.metricsCollector.kind (list "StdOut" "File" "TensorFlowEvent") }}
{{- if and $wrapped (not (contains "\"" .arg)) }}
{{- printf "\"%s\"" .arg | quote }}
{{- else }}
{{- .arg | quote }}
{{- end }}
{{- end }}

{{/*
sha256 of the values that shape a trial, for each trial's provenance (katib_nas_contract.provenance):
experiment and trial as rendered (toYaml of the merged values), less parallelTrialCount,
maxTrialCount and maxFailedTrialCount. Katib freezes a running Experiment's trial template but lets
those three change, so raising maxTrialCount leaves the digest, and the template, as they were.
trial.image is left out too: the trial records the image it ran (KATIB_NAS_TRAINER_IMAGE and the
pod's digest), and pinning the tag a release already uses must not change the frozen template.
*/}}
{{- define "katib-nas.trialValuesDigest" -}}
{{- $experiment := omit .Values.experiment "parallelTrialCount" "maxTrialCount" "maxFailedTrialCount" }}
{{- $trial := omit .Values.trial "image" }}
{{- include "katib-nas.withoutNulls" (dict "experiment" $experiment "trial" $trial) | sha256sum }}
{{- end }}

{{/*
A map as YAML without its null values, at any depth. Helm keeps a key whose default is null when a
values file sets it to null again, and drops it otherwise: the two mean the same, so they must
digest the same.
*/}}
{{- define "katib-nas.withoutNulls" -}}
{{- $out := dict }}
{{- range $key, $value := . }}
{{- if kindIs "map" $value }}
{{- $_ := set $out $key (include "katib-nas.withoutNulls" $value | fromYaml) }}
{{- else if not (kindIs "invalid" $value) }}
{{- $_ := set $out $key $value }}
{{- end }}
{{- end }}
{{- toYaml $out }}
{{- end }}

{{/*
The chart version a trial records: this chart's, or, when the Experiment exists already, the one its
trial template holds. Katib freezes a running Experiment's trial template and its trials keep running
from it, so an upgrade to a new chart version leaves the template, and what trials record, as it was.
`helm template` looks nothing up (`katib-nas install` compares with that in mind, upgrade.py).
*/}}
{{- define "katib-nas.trialChart" -}}
{{- $chart := include "katib-nas.chart" . }}
{{- $live := lookup "kubeflow.org/v1beta1" "Experiment" (include "katib-nas.namespace" .) (include "katib-nas.experimentName" .) }}
{{- range (dig "spec" "trialTemplate" "trialSpec" "spec" "template" "spec" "containers" list ($live | default dict)) }}
{{- range (.env | default list) }}
{{- if eq .name "KATIB_NAS_CHART" }}{{ $chart = .value }}{{ end }}
{{- end }}
{{- end }}
{{- $chart }}
{{- end }}
