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
  description = "Port on this machine where the Argo CD UI and API answer (mapped to the server's NodePort)."
  type        = number
  default     = 8080
}

variable "gitops_repo_url" {
  description = "The repository Argo CD reads (your fork). `cargo xtask` writes it into gitops/argocd as well."
  type        = string
  default     = "https://github.com/example/service-demo.git"
}
