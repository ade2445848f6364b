{{/*
The operator's RBAC rules: exactly the verbs it uses, no more. The source of truth is
chatservice_operator/rbac.py; tests/chart/test_rbac.py fails when these lists drift from it.
They go in a Role in the watched namespace (a ClusterRole when cluster-wide). Nothing is
cluster-scoped: the operator turns off Kopf's scanning of namespaces and CRDs.
*/}}
{{- define "chatservice.operator.namespacedRules" -}}
- apiGroups: ["chatservice.dev"]
  resources: ["chatservices"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["chatservice.dev"]
  resources: ["chatservices/status"]
  verbs: ["patch"]
- apiGroups: ["chatservice.dev"]
  resources: ["chatservices/finalizers"]
  verbs: ["update"]
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "create", "patch"]
- apiGroups: ["autoscaling"]
  resources: ["horizontalpodautoscalers"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["get", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
