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

output "argocd_ci_token_commands" {
  description = "Make the API tokens of the ci and ci-preview accounts (argocd CLI; log in as admin first)."
  value       = <<-EOT
    argocd login 127.0.0.1:${var.argocd_http_port} --plaintext --username admin   # asks for the password (argocd_admin_password_command), so it is never on a command line
    argocd account generate-token --account ci          # ARGOCD_AUTH_TOKEN (prod) and ARGOCD_PREPROD_TOKEN (preprod)
    argocd account generate-token --account ci-preview  # ARGOCD_PREVIEW_TOKEN (repository secret)
  EOT
}
