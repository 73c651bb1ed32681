variable "cluster_name" {
  description = "Name of the kind cluster."
  type        = string
  default     = "service-demo"
}

variable "kubernetes_version" {
  description = "kindest/node image tag: the Kubernetes version of the cluster."
  type        = string
  default     = "v1.32.2"
}

variable "argocd_chart_version" {
  description = "Version of the argo-cd Helm chart (argoproj/argo-helm), pinned so that every apply installs the same Argo CD."
  type        = string
  default     = "7.7.11"
}

variable "argocd_apps_chart_version" {
  description = "Version of the argocd-apps Helm chart that creates the root Application."
  type        = string
  default     = "2.0.2"
}

variable "argocd_http_port" {
  description = "Port on this machine where the Argo CD UI and API answer (mapped to the server's NodePort); not 8080, items-api's own port."
  type        = number
  default     = 8090
}

variable "ingress_http_port" {
  description = "Port on this machine where the environments answer over HTTP through the ingress controller: http://preprod.localhost:<this>, http://pr-<N>.localhost:<this>."
  type        = number
  default     = 8081
}

variable "ingress_https_port" {
  description = "Port on this machine mapped to the ingress controller's HTTPS port."
  type        = number
  default     = 8443
}

variable "ingress_domain" {
  description = "The domain the chart's Ingress hosts end in (charts/service-demo/values.yaml ingress.domain); used in the outputs."
  type        = string
  default     = "localhost"
}

variable "ingress_nginx_chart_version" {
  description = "Version of the ingress-nginx Helm chart (kubernetes/ingress-nginx), pinned."
  type        = string
  default     = "4.12.3"
}

variable "cloudnative_pg_chart_version" {
  description = "Version of the cloudnative-pg Helm chart (the CloudNativePG operator), pinned."
  type        = string
  default     = "0.23.2"
}

variable "kyverno_chart_version" {
  description = "Version of the kyverno Helm chart (the admission controller enforcing image signatures), pinned."
  type        = string
  default     = "3.5.2"
}

variable "gitops_repo_url" {
  description = "The repository Argo CD reads (your fork). `cargo xtask` writes it into gitops/argocd as well."
  type        = string
  default     = "https://github.com/example/service-demo.git"
}
