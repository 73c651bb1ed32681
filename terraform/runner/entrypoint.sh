#!/bin/sh
# The cluster runner container's entrypoint: one job, then the container ends and `docker run --rm` removes it.
#
# 1. RUNNER_FORWARDS (e.g. 8090=service-demo-control-plane:30080,8081=service-demo-control-plane:80): loopback ports
#    forwarded to kind's node (named by the dispatcher's --add-host; the runner network's firewall lets these
#    ports through and nothing else private), so ARGOCD_SERVER=http://127.0.0.1:8090 and
#    INGRESS_URL=http://127.0.0.1:8081 mean the same here as on the laptop.
# 2. The Actions runner, copied into the fresh home (a tmpfs: the root is read-only), run once with the
#    just-in-time configuration it reads from ACTIONS_RUNNER_INPUT_JITCONFIG (never an argument).
set -eu

if [ -z "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" ]; then
    echo "no ACTIONS_RUNNER_INPUT_JITCONFIG: start this image with cargo xtask cluster runner" >&2
    exit 2
fi

for forward in $(echo "${RUNNER_FORWARDS:-}" | tr ',' ' '); do
    port=${forward%%=*}
    target=${forward#*=}
    socat "TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr,fork" "TCP:${target}" &
done

cp -a /opt/actions-runner "$HOME/actions-runner"
cd "$HOME/actions-runner"
exec ./run.sh
