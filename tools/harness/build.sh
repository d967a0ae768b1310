#!/usr/bin/env bash
# Builds every harness tool that is missing or whose pinned version changed, into
# ${JUPYTERNETES_TOOLS:-${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}/tools}.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/kube/build.sh"
bash "$here/pulumi/build.sh"
bash "$here/postgres/install.sh"
bash "$here/hub/build.sh"
bash "$here/node/build.sh"
