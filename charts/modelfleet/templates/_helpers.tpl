{{/* The operator's objects are named <release>-operator ("modelfleet-operator" for a release named modelfleet). */}}
{{- define "modelfleet.fullname" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "modelfleet.selectorLabels" -}}
app.kubernetes.io/name: modelfleet-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "modelfleet.labels" -}}
{{ include "modelfleet.selectorLabels" . }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: modelfleet
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Where the operator's rules apply: the watched namespaces, or the whole cluster. */}}
{{- define "modelfleet.namespaces" -}}
{{- if and (not .Values.watch.allNamespaces) (not .Values.watch.namespaces) -}}
{{- fail "watch.namespaces: []: name at least one namespace when watch.allNamespaces is false" -}}
{{- end -}}
{{- end -}}

{{/* What the operator does with fleets, their RayServices and Events (docs/security.md explains every rule). */}}
{{- define "modelfleet.fleetRules" -}}
# Watch fleets; kopf records its handler progress in the fleet's annotations (patch).
- apiGroups: [modelfleet.dev]
  resources: [modelfleets]
  verbs: [get, list, watch, patch]
# Phase, ready count, per-model state and conditions.
- apiGroups: [modelfleet.dev]
  resources: [modelfleets/status]
  verbs: [patch]
# The owned RayService: server-side applied (create, patch), watched for KubeRay's status.
- apiGroups: [ray.io]
  resources: [rayservices]
  verbs: [get, list, watch, create, patch]
# The owned NetworkPolicy around the fleet's Ray pods: server-side applied, watched for hand edits, deleted
# when a fleet turns it off (networkPolicy.enabled: false).
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch, create, patch, delete]
# The owned ConfigMap of a high-throughput fleet (the HAProxy wrapper and the routes by model its Ray pods
# mount): server-side applied, watched for hand edits, deleted when the fleet leaves high-throughput mode.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch, create, patch, delete]
# The worker pods of fleets' Ray clusters (read only): status.workers, and a model's wait for a worker.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Events on fleets (Created, Updated, Invalid, ModelFailed, FleetReady). kopf posts core/v1 Events only.
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}
