{{/*
The operator's RBAC rules: exactly the verbs it uses, no more. The source of truth is
chatservice_operator/rbac.py (RULES); tests/chart/test_rbac.py fails when this list drifts from it.
*/}}
{{- define "chatservice.operator.rules" -}}
- apiGroups: ["chatservice.dev"]
  resources: ["chatservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["chatservice.dev"]
  resources: ["chatservices/status"]
  verbs: ["get", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: [""]
  resources: ["services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
