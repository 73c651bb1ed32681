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

output "ingress_url" {
  description = "The ingress controller (INGRESS_URL for `cargo xtask smoke` and `preprod-test`): each service in each environment answers through it at its own host, e.g. http://preprod.${var.ingress_domain}:${var.ingress_http_port}, http://pr-<N>.${var.ingress_domain}:${var.ingress_http_port}, http://<service>.<env>.${var.ingress_domain}:${var.ingress_http_port}."
  value       = "http://127.0.0.1:${var.ingress_http_port}"
}

output "argocd_tokens" {
  description = "The Argo CD tokens the workflows read: roles of the service-demo AppProject (gitops/argocd/project.yaml), made over Argo CD's API by `cargo xtask cluster up` and written straight to the fork's environment secrets (never printed)."
  value       = "ARGOCD_PREVIEW_TOKEN (environment preview): project role service-demo/preview; ARGOCD_PREPROD_TOKEN (environment preprod): project role service-demo/preprod; ARGOCD_AUTH_TOKEN (environment prod): project role service-demo/release"
}
