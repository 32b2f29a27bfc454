#!/bin/sh
# Starts the GitHub Actions runner for one job with the JIT config runnerhub passed in
# ACTIONS_RUNNER_INPUT_JITCONFIG; run.sh reads it from the environment (never logged here).
set -eu
if [ -z "${ACTIONS_RUNNER_INPUT_JITCONFIG:-}" ]; then
    echo "runnerhub-entrypoint: ACTIONS_RUNNER_INPUT_JITCONFIG is not set; this image only runs JIT runners" >&2
    exit 2
fi
# Default command is /home/runner/run.sh; a pool may pass another command (e.g. a wrapper).
exec "$@"
