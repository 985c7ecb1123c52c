{{/*
The batch Job's spec. A Job's pod template cannot change after creation, so the Job is named after a
hash of this spec (katib-nas.batch.jobName): `helm upgrade` with other batch values or a new image
creates a new Job and deletes the old one, while an unchanged spec keeps its Job and its result.
*/}}
{{- define "katib-nas.batch.jobSpec" -}}
{{- $c := .Values.batchInference -}}
backoffLimit: {{ $c.backoffLimit | int }}
{{- if not (kindIs "invalid" $c.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ $c.ttlSecondsAfterFinished | int }}
{{- end }}
template:
  metadata:
    labels:
      {{- include "katib-nas.selectorLabels" (dict "context" . "component" "batch") | nindent 6 }}
    annotations:
      {{- include "katib-nas.podAnnotations" . | nindent 6 }}
  spec:
    restartPolicy: {{ $c.restartPolicy }}
    serviceAccountName: {{ include "katib-nas.serviceAccountName" . }}
    automountServiceAccountToken: true
    {{- with .Values.podSecurityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $c.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $c.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $c.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    initContainers:
      - name: wait-for-best
        image: {{ include "katib-nas.image" (dict "context" . "image" .Values.server.image) | quote }}
        imagePullPolicy: {{ .Values.server.image.pullPolicy }}
        command:
          {{- include "katib-nas.promoteCommand" (dict "context" . "mode" "final") | nindent 10 }}
        {{- with $c.resources }}
        resources:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .Values.securityContext }}
        securityContext:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        volumeMounts:
          {{- include "katib-nas.volumeMounts" . | nindent 10 }}
    containers:
      - name: batch
        image: {{ include "katib-nas.image" (dict "context" . "image" .Values.server.image) | quote }}
        imagePullPolicy: {{ .Values.server.image.pullPolicy }}
        command:
          - python
          - -m
          - katib_nas_server
          - batch
          - {{ printf "--experiment-dir=%s" (include "katib-nas.experimentDir" .) | quote }}
          - {{ printf "--dataset=%s" $c.dataset | quote }}
          - "--batch-size={{ $c.batchSize | int }}"
        {{- with $c.resources }}
        resources:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with .Values.securityContext }}
        securityContext:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        volumeMounts:
          {{- include "katib-nas.volumeMounts" . | nindent 10 }}
    volumes:
      {{- include "katib-nas.volumes" . | nindent 6 }}
{{- end }}

{{- define "katib-nas.batch.jobName" -}}
{{- $hash := include "katib-nas.batch.jobSpec" . | sha256sum | trunc 8 }}
{{- include "katib-nas.componentName" (dict "context" . "component" (printf "batch-%s" $hash)) }}
{{- end }}
