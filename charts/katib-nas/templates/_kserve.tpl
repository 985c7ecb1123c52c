{{/*
KServe mode. The predictor must be admitted in both of KServe's deployment modes: Serverless, where
KServe makes a Knative Service that Knative Serving validates with its default feature flags (no init
containers, no PVC volumes, no pod securityContext, a port named "", h2c or http1), and
RawDeployment/Standard, where it makes a Deployment. So the predictor carries none of those: KServe
itself mounts the model PVC, read-only, at /mnt/models from storageUri pvc://<claim>/<experiment>
(its pod webhook's direct PVC mount, after Knative's validation), and the server follows best.json
there, which the extraction pod's promote step keeps current by atomic rename, exactly as in fastapi
mode: a better trial is picked up without a new revision.
*/}}

{{/* KServe's mount of the storage URI in the predictor container. */}}
{{- define "katib-nas.kserve.modelDir" -}}
/mnt/models
{{- end }}

{{/* The experiment's directory on the model PVC. */}}
{{- define "katib-nas.kserve.storageUri" -}}
{{- printf "pvc://%s/%s" (include "katib-nas.claimName" .) (include "katib-nas.experimentName" .) }}
{{- end }}

{{/* Environment KServe reads from a custom predictor container: the model's storage URI and the protocol. */}}
{{- define "katib-nas.kserve.env" -}}
- name: STORAGE_URI
  value: {{ include "katib-nas.kserve.storageUri" . | quote }}
- name: PROTOCOL
  value: v2
{{- end }}

{{/* Where the server reads best.json and the trial records. */}}
{{- define "katib-nas.server.modelDir" -}}
{{- if eq .Values.server.mode "kserve" }}
{{- include "katib-nas.kserve.modelDir" . }}
{{- else }}
{{- include "katib-nas.experimentDir" . }}
{{- end }}
{{- end }}

{{/* Knative names the port for the protocol it proxies: empty, h2c or http1. */}}
{{- define "katib-nas.server.portName" -}}
{{- ternary "http1" "http" (eq .Values.server.mode "kserve") }}
{{- end }}

{{/*
The server container's security context. Knative refuses a pod-level securityContext unless a flag
is on, so in kserve mode the pod-level user and seccomp settings move into the container (where the
restricted Pod Security Standard accepts them too).
*/}}
{{- define "katib-nas.server.securityContext" -}}
{{- if eq .Values.server.mode "kserve" }}
{{- $pod := pick (.Values.podSecurityContext | default dict) "runAsNonRoot" "runAsUser" "runAsGroup" "seccompProfile" }}
{{- with merge (deepCopy (.Values.securityContext | default dict)) $pod }}
{{- toYaml . }}
{{- end }}
{{- else }}
{{- with .Values.securityContext }}
{{- toYaml . }}
{{- end }}
{{- end }}
{{- end }}
