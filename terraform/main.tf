# A local kind cluster with Argo CD, and Argo CD pointed at gitops/argocd/root.yaml. After `terraform apply`,
# every change to the cluster is a commit: the pipeline never talks to the cluster.

locals {
  # The NodePort the Argo CD server listens on inside the cluster, mapped to var.argocd_http_port.
  argocd_node_port = 30080
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

      extra_port_mappings {
        container_port = local.argocd_node_port
        host_port      = var.argocd_http_port
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

  depends_on = [helm_release.argocd]
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
