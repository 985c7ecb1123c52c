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
    {{- if eq .Values.server.mode "fastapi" }}
    - name: kube-api-access
      mountPath: /var/run/secrets/kubernetes.io/serviceaccount
      readOnly: true
    {{- end }}
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
      value: {{ include "katib-nas.server.modelDir" . | quote }}
    - name: MODEL_NAME
      value: {{ .Values.server.modelName | quote }}
    {{- with .Values.server.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- if eq .Values.server.mode "kserve" }}
    {{- include "katib-nas.kserve.env" . | nindent 4 }}
    {{- end }}
  ports:
    - name: {{ include "katib-nas.server.portName" . }}
      containerPort: {{ .Values.server.containerPort | int }}
      protocol: TCP
  livenessProbe:
    httpGet:
      path: /v2/health/live
      port: {{ include "katib-nas.server.portName" . }}
  readinessProbe:
    httpGet:
      path: /v2/health/ready
      port: {{ include "katib-nas.server.portName" . }}
  {{- if eq .Values.server.mode "fastapi" }}
  # Liveness waits until the process first answers (imports and the first model load), up to 2 min.
  startupProbe:
    httpGet:
      path: /v2/health/live
      port: {{ include "katib-nas.server.portName" . }}
    periodSeconds: 2
    failureThreshold: 60
  {{- end }}
  {{- with .Values.server.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with include "katib-nas.server.securityContext" . }}
  securityContext:
    {{- . | nindent 4 }}
  {{- end }}
  volumeMounts:
    {{- if eq .Values.server.mode "kserve" }}
    {{- include "katib-nas.tmpVolumeMount" . | nindent 4 }}
    {{- else }}
    - name: models  # the server only reads the records and the pointer
      mountPath: {{ .Values.persistence.mountPath }}
      readOnly: true
    {{- include "katib-nas.tmpVolumeMount" . | nindent 4 }}
    {{- end }}
{{- end }}

{{/*
The Deployment's volumes: the model PVC, /tmp bounded by server.tmpSizeLimit (uploads over 1 MiB
spool there), and the API token projected for the init container alone, as the kubelet's automount
would (the server container needs no token).
*/}}
{{- define "katib-nas.server.volumes" -}}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "katib-nas.claimName" . }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.server.tmpSizeLimit }}
- name: kube-api-access
  projected:
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
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
