output "kubeconfig_path" {
  description = "kubeconfig of the kind cluster: export KUBECONFIG=<this>."
  value       = kind_cluster.this.kubeconfig_path
}

output "argocd_url" {
  description = "Argo CD UI and API (ARGOCD_SERVER for `cargo xtask argocd`)."
  value       = "http://127.0.0.1:${var.argocd_http_port}"
}

output "argocd_admin_password_command" {
  description = "Prints the initial admin password."
  value       = "kubectl --kubeconfig ${kind_cluster.this.kubeconfig_path} -n argocd get secret argocd-initial-admin-secret -o jsonpath='{.data.password}' | base64 -d"
}
