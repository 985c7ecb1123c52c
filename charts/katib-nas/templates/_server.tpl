{{/* The server pod's init container and container, shared by the Deployment and the InferenceService. */}}
{{- define "katib-nas.server.initContainers" -}}
- name: wait-for-best
  image: {{ include "katib-nas.image" (dict "context" . "image" .Values.server.image) | quote }}
  imagePullPolicy: {{ .Values.server.image.pullPolicy }}
  command:
    {{- include "katib-nas.promoteCommand" (dict "context" . "mode" "first") | nindent 4 }}
  {{- with .Values.server.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    {{- include "katib-nas.volumeMounts" . | nindent 4 }}
{{- end }}

{{- define "katib-nas.server.container" -}}
- name: server
  image: {{ include "katib-nas.image" (dict "context" . "image" .Values.server.image) | quote }}
  imagePullPolicy: {{ .Values.server.image.pullPolicy }}
  command:
    - python
    - -m
    - katib_nas_server
    - serve
    - "--port={{ .Values.server.containerPort | int }}"
  env:
    - name: MODEL_DIR
      value: {{ include "katib-nas.experimentDir" . | quote }}
    - name: MODEL_NAME
      value: {{ .Values.server.modelName | quote }}
  ports:
    - name: http
      containerPort: {{ .Values.server.containerPort | int }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /v2/health/live
      port: http
  readinessProbe:
    httpGet:
      path: /v2/health/ready
      port: http
  {{- with .Values.server.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  volumeMounts:
    {{- include "katib-nas.volumeMounts" . | nindent 4 }}
{{- end }}

{{- define "katib-nas.server.scheduling" -}}
{{- with .Values.server.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.server.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.server.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
