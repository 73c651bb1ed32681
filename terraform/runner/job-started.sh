#!/bin/sh
# The cluster runner's job-started hook (ACTIONS_RUNNER_HOOK_JOB_STARTED, set in this directory's Dockerfile): the
# Actions runner runs it before the job's first step, with the job's GitHub environment; a non-zero exit fails the
# job before any of its code runs.
#
# Why here: GitHub gives a just-in-time runner any queued job whose labels it matches, so the dispatcher's own
# check of the run (main, the pipeline's events) cannot decide which job this runner gets. GitHub's runner groups
# limited to selected workflows would, but they need an organization and a fork is usually a user's. So the job
# is checked where it runs: only main's reviewed workflows, from the events CD (push), release
# (workflow_dispatch) and preview (workflow_run, pull_request_target, schedule, workflow_dispatch) use. For
# workflow_run and pull_request_target GitHub sets GITHUB_REF to the default branch: main's code runs.
# `cargo xtask validate` refuses a workflow job on this runner outside the main-only environments (preview,
# preprod, prod), which GitHub limits to main.
set -u

refuse() {
    echo "::error::the cluster runner refuses this job: $1. Only main's reviewed workflows run here (terraform/runner/job-started.sh)." >&2
    exit 1
}

case "${GITHUB_REF:-}" in
    refs/heads/main) ;;
    *) refuse "GITHUB_REF is '${GITHUB_REF:-}', not refs/heads/main" ;;
esac
case "${GITHUB_WORKFLOW_REF:-}" in
    "${GITHUB_REPOSITORY:-?}"/.github/workflows/*@refs/heads/main) ;;
    *) refuse "the workflow is '${GITHUB_WORKFLOW_REF:-}', not one of ${GITHUB_REPOSITORY:-this repository}'s at refs/heads/main" ;;
esac
case "${GITHUB_EVENT_NAME:-}" in
    push | workflow_dispatch | workflow_run | pull_request_target | schedule) ;;
    *) refuse "the event is '${GITHUB_EVENT_NAME:-}', not one CD, release or preview use" ;;
esac
echo "cluster runner: ${GITHUB_WORKFLOW_REF} (${GITHUB_EVENT_NAME}) on refs/heads/main: accepted"
