# A local kind cluster with Argo CD, an ingress controller and the CloudNativePG operator, and Argo CD pointed at
# gitops/argocd/root.yaml. After `terraform apply`, every change to the cluster is a commit: the pipeline never
# talks to the cluster.
#
# Host ports (all on 127.0.0.1, none of them 8080, which is items-api's default PORT for `cargo run -p items-api`
# and the demo): Argo CD on var.argocd_http_port (8090), the ingress controller on var.ingress_http_port (8081) and
# var.ingress_https_port (8443): unprivileged ports that a laptop's own web server rarely holds, unlike 80/443.
# Set the ingress ports to 80/443 for URLs without a port. `cargo xtask validate` checks that no two collide and
# none is 8080.

locals {
  # The NodePort the Argo CD server listens on inside the cluster, mapped to var.argocd_http_port.
  argocd_node_port = 30080
  # Where ingress-nginx runs; the chart's NetworkPolicy admits this namespace (networkPolicy.ingressControllerNamespace).
  ingress_namespace = "ingress-nginx"
}

resource "kind_cluster" "this" {
  name            = var.cluster_name
  node_image      = "kindest/node:${var.kubernetes_version}"
  wait_for_ready  = true
  kubeconfig_path = pathexpand("~/.kube/kind-${var.cluster_name}")

  kind_config {
    kind        = "Cluster"
    api_version = "kind.x-k8s.io/v1alpha4"

    node {
      role = "control-plane"

      # The node the ingress controller runs on (its nodeSelector), as kind's ingress guide has it.
      kubeadm_config_patches = [
        "kind: InitConfiguration\nnodeRegistration:\n  kubeletExtraArgs:\n    node-labels: \"ingress-ready=true\"\n",
      ]

      extra_port_mappings {
        container_port = local.argocd_node_port
        host_port      = var.argocd_http_port
        listen_address = "127.0.0.1"
      }

      # The ingress controller's hostPorts 80 and 443 on this node.
      extra_port_mappings {
        container_port = 80
        host_port      = var.ingress_http_port
        listen_address = "127.0.0.1"
      }

      extra_port_mappings {
        container_port = 443
        host_port      = var.ingress_https_port
        listen_address = "127.0.0.1"
      }
    }

    node {
      role = "worker"
    }
  }
}

provider "helm" {
  kubernetes {
    config_path = kind_cluster.this.kubeconfig_path
  }
}

resource "helm_release" "argocd" {
  name             = "argocd"
  repository       = "https://argoproj.github.io/argo-helm"
  chart            = "argo-cd"
  version          = var.argocd_chart_version
  namespace        = "argocd"
  create_namespace = true
  wait             = true

  values = [yamlencode({
    configs = {
      params = {
        # TLS ends at the NodePort on loopback; a real cluster terminates TLS at its ingress instead.
        "server.insecure" = true
        # The previews' git files generator matches gitops/values/pr/pr-*/<values-file> with `*` stopping at `/`:
        # with the default (greedy) globbing, gitops/values/pr/pr-7/x/<values-file> would match too.
        "applicationsetcontroller.enable.new.git.file.globbing" = "true"
      }
      cm = {
        # The app of apps waits for each child Application to be healthy (Argo CD >= 1.8 no longer
        # assesses Application health by default).
        "resource.customizations.health.argoproj.io_Application" = <<-LUA
          hs = {}
          hs.status = "Progressing"
          hs.message = ""
          if obj.status ~= nil and obj.status.health ~= nil then
            hs.status = obj.status.health.status
            if obj.status.health.message ~= nil then
              hs.message = obj.status.health.message
            end
          end
          return hs
        LUA
        # Check git every 60 s instead of 180 s; `cargo xtask argocd wait` also asks for a refresh.
        "timeout.reconciliation" = "60s"
        # API-key accounts (no UI login) for a person's use by hand. The workflows read narrower tokens: the
        # service-demo project's roles, which `cargo xtask cluster up` makes and writes to the fork's environment
        # secrets (`terraform output argocd_tokens`).
        "accounts.ci"         = "apiKey"
        "accounts.ci-preview" = "apiKey"
      }
      rbac = {
        # Nobody gets anything by default; admin keeps role:admin.
        "policy.default" = ""
        # ci: see and sync the service-demo project's applications (preprod's wait, release's sync of prod and dev),
        # nothing else: no other project, no project, repository, cluster or account changes.
        # ci-preview: the previews only, <values-file stem>-pr-<N> of every service (a pull request's workflow can read
        # its token, so it stays that narrow; `cargo xtask validate` refuses a stem that would make a long-lived
        # Application match *-pr-*).
        "policy.csv" = <<-CSV
          p, role:ci, applications, get, service-demo/*, allow
          p, role:ci, applications, sync, service-demo/*, allow
          g, ci, role:ci
          p, role:ci-preview, applications, get, service-demo/*-pr-*, allow
          p, role:ci-preview, applications, sync, service-demo/*-pr-*, allow
          g, ci-preview, role:ci-preview
        CSV
      }
    }
    server = {
      service = {
        type         = "NodePort"
        nodePortHttp = local.argocd_node_port
      }
    }
  })]
}

locals {
  # The AppProjects, applied here (a reviewed, human-applied change) and never by the root app, so a commit
  # pushed under gitops/argocd/ cannot widen what Argo CD may deploy.
  projects = {
    for file in ["project.yaml", "bootstrap-project.yaml"] :
    yamldecode(file("${path.module}/../gitops/argocd/${file}")).metadata.name => merge(
      yamldecode(file("${path.module}/../gitops/argocd/${file}")).spec,
      {
        namespace  = "argocd"
        finalizers = try(yamldecode(file("${path.module}/../gitops/argocd/${file}")).metadata.finalizers, [])
      },
    )
  }
}

resource "helm_release" "root_app" {
  name       = "service-demo-root"
  repository = "https://argoproj.github.io/argo-helm"
  chart      = "argocd-apps"
  version    = var.argocd_apps_chart_version
  namespace  = "argocd"

  # The projects, and the same Application as gitops/argocd/root.yaml pointed at var.gitops_repo_url.
  values = [yamlencode({
    projects = local.projects
    applications = {
      service-demo-root = {
        namespace  = "argocd"
        project    = "service-demo-bootstrap"
        finalizers = ["resources-finalizer.argocd.argoproj.io"]
        source = {
          repoURL        = var.gitops_repo_url
          targetRevision = "main"
          # Only the Applications: not recursive, so nothing placed beside or below them is applied.
          path      = "gitops/argocd/apps"
          directory = { recurse = false }
        }
        destination = {
          server    = "https://kubernetes.default.svc"
          namespace = "argocd"
        }
        syncPolicy = {
          automated = { prune = true, selfHeal = true }
        }
      }
    }
  })]

  # The operator's CRDs exist before Argo CD syncs the databases' Clusters (gitops/database/).
  depends_on = [helm_release.argocd, helm_release.cloudnative_pg, helm_release.ingress_nginx]
}

# The ingress controller every environment is reached through: http://<env>.localhost:<ingress_http_port> (the chart's
# Ingress, class nginx). Installed here, like Argo CD, and not by Argo CD: it is cluster-wide (an IngressClass,
# ClusterRoles, an admission webhook), which no AppProject under gitops/argocd may deploy.
resource "helm_release" "ingress_nginx" {
  name             = "ingress-nginx"
  repository       = "https://kubernetes.github.io/ingress-nginx"
  chart            = "ingress-nginx"
  version          = var.ingress_nginx_chart_version
  namespace        = local.ingress_namespace
  create_namespace = true
  wait             = true

  values = [yamlencode({
    controller = {
      # kind has no load balancer: the controller binds 80/443 on the ingress-ready node, which kind maps to
      # var.ingress_http_port/var.ingress_https_port on this machine.
      hostPort     = { enabled = true }
      service      = { type = "ClusterIP" }
      nodeSelector = { "ingress-ready" = "true", "kubernetes.io/os" = "linux" }
      tolerations = [
        { key = "node-role.kubernetes.io/control-plane", operator = "Equal", effect = "NoSchedule" },
      ]
      publishService       = { enabled = false }
      extraArgs            = { "publish-status-address" = "localhost" }
      ingressClassResource = { name = "nginx", default = false }
    }
  })]

  depends_on = [kind_cluster.this]
}

# CloudNativePG: the operator that runs preprod's and prod's PostgreSQL (gitops/database/<env>/) and makes the Secret
# service-demo-db-app the chart reads. Installed here for the same reason as the ingress controller: CRDs, cluster
# RBAC and webhooks are a reviewed, human-applied change, never something a commit under gitops/argocd can add.
resource "helm_release" "cloudnative_pg" {
  name             = "cnpg"
  repository       = "https://cloudnative-pg.github.io/charts"
  chart            = "cloudnative-pg"
  version          = var.cloudnative_pg_chart_version
  namespace        = "cnpg-system"
  create_namespace = true
  wait             = true

  depends_on = [kind_cluster.this]
}

# Kyverno: the admission controller that enforces gitops/policy/image-signatures.yaml (only images signed by
# gitops/policy/cosign.pub run in dev, preprod and prod). Installed here for the same reason as the operators above:
# whoever can change admission can run anything, so no commit under gitops/argocd can. The policy itself is not
# Terraform's: `cargo xtask cluster up` reads it from the fork's gitops/policy/ on every run, checks it carries
# cosign.pub, and applies it (kubectl apply -f -), so a fork's own key reaches the cluster with no edit here.
# `cargo xtask validate` refuses a key inline in any .tf file.
resource "helm_release" "kyverno" {
  name             = "kyverno"
  repository       = "https://kyverno.github.io/kyverno/"
  chart            = "kyverno"
  version          = var.kyverno_chart_version
  namespace        = "kyverno"
  create_namespace = true
  wait             = true

  depends_on = [kind_cluster.this]
}

# Argo CD creates the default project itself (Helm cannot own it), so it is emptied with kubectl: an
# Application pushed with `project: default` then may deploy nothing.
resource "terraform_data" "empty_default_project" {
  triggers_replace = filesha256("${path.module}/../gitops/argocd/default-project.yaml")

  provisioner "local-exec" {
    command = "kubectl --kubeconfig ${kind_cluster.this.kubeconfig_path} apply -f ${path.module}/../gitops/argocd/default-project.yaml"
  }

  depends_on = [helm_release.argocd]
}
