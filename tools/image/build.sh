#!/usr/bin/env bash
# Builds the operator image (Containerfile at the repository root) with buildah, offline from any
# image registry:
#   1. base root filesystem: Debian bookworm (python3, venv, CA certificates) made by mmdebstrap
#      from Debian's packages (rootfs.sh), cached in $cache/image/;
#   2. the pinned `pulumi` CLI and `pulumi-resource-kubernetes` plugin: tools/harness/pulumi/build.sh
#      (the one list of pins; a no-op when the harness already built them), staged into the
#      build context;
#   3. wheels of this package and its pinned dependencies (pip, from PyPI or pip's cache);
#   4. `buildah bud` of the multi-stage Containerfile, then an OCI archive an admin can load and
#      push to their own registry: build/image/jupyternetes-operator.oci.tar.
# Usage: tools/image/build.sh [IMAGE]   (default jupyternetes/operator:<package version>)
# Needs root; installs buildah and mmdebstrap with apt-get when missing.
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}
tools=${JUPYTERNETES_TOOLS:-$cache/tools}
python=${PYTHON:-$repo/.venv/bin/python}
version=$("$python" -c 'import importlib.metadata as m; print(m.version("jupyternetes"))')
image=${1:-jupyternetes/operator:$version}
context=$repo/build/image
buildah=(buildah --storage-driver vfs)
log() { printf '[image] %s\n' "$*" >&2; }

mkdir -p "$cache/image" "$context"

# ---- 1. base root filesystem ------------------------------------------------------------------
# shellcheck source=rootfs.sh
source "$repo/tools/image/rootfs.sh"
need_image_tools
rootfs=$(make_rootfs "$cache" python3,python3-venv,ca-certificates)
ln -f "$rootfs" "$context/rootfs.tar" 2>/dev/null || cp -f "$rootfs" "$context/rootfs.tar"

# ---- 2. pulumi CLI + Kubernetes provider (the harness's pins) ---------------------------------
bash "$repo/tools/harness/pulumi/build.sh"
k8s_version=$(tr -d '[:space:]' <"$repo/tools/harness/pulumi/kubernetes/VERSION")
plugin=resource-kubernetes-v$k8s_version
rm -rf "$context/pulumi"
mkdir -p "$context/pulumi/usr/local/bin" "$context/pulumi/opt/pulumi/plugins/$plugin"
cp "$tools/pulumi-cli/bin/pulumi" "$context/pulumi/usr/local/bin/pulumi"
cp "$cache/pulumi-home/plugins/$plugin/pulumi-resource-kubernetes" \
	"$context/pulumi/opt/pulumi/plugins/$plugin/"

# ---- 3. wheels --------------------------------------------------------------------------------
rm -rf "$context/wheels"
log "building wheels of jupyternetes $version and its dependencies"
"$python" -m pip wheel -q --wheel-dir "$context/wheels" "$repo[operator]"

# ---- 4. image ---------------------------------------------------------------------------------
log "buildah bud -> $image"
start=$SECONDS
"${buildah[@]}" bud --isolation chroot --layers=false -f "$repo/Containerfile" \
	--build-arg "K8S_PLUGIN=$plugin" -t "$image" "$context"
rm -f "$context/jupyternetes-operator.oci.tar"
"${buildah[@]}" push "$image" "oci-archive:$context/jupyternetes-operator.oci.tar:$image"
log "built $image in $((SECONDS - start)) s: $context/jupyternetes-operator.oci.tar"
