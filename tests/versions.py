"""The Kubernetes versions the tests stand for, in one place."""

# What the emulated API server reports (/version) and the chart is rendered and validated for:
# the newest minor both kubernetes-validate's schemas and current kind node images cover.
KUBERNETES_VERSION = "1.35.0"
# The oldest Kubernetes the plain manifests target: preStop `sleep` needs 1.30 (beta, on by
# default); kubernetes-validate checks the CRD and the kustomize base against it.
OLDEST_KUBERNETES_VERSION = "1.31"
