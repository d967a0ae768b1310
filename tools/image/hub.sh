#!/usr/bin/env bash
# Builds the hub image (tools/image/hub/Containerfile) with buildah, offline from any image
# registry, as an OCI archive the real node imports into containerd:
#   <cache>/image/jupyternetes-hub.oci.tar, named jupyternetes.local/hub:<stamp>.
#   1. base root filesystem: Debian bookworm with python3 (rootfs.sh, shared with the others);
#   2. wheels: jupyterhub 6.1.1 (the hub the tests run) with jupyterhub-idle-culler, and this
#      package with its `[spawner]` extra (kubernetes, pyyaml; no Pulumi SDK in the hub);
#   3. configurable-http-proxy as tools/harness/hub/build.sh installs it (npm ci of the committed
#      lock file) with this machine's Node.js >= 20 (Debian bookworm's nodejs is 18, too old for
#      configurable-http-proxy 5; the host's node binary needs only libc and libstdc++);
#   4. `buildah bud`, `buildah push oci-archive:`.
# Rebuilt only when an input changes (a stamp over them). Prints the image's name.
# Usage: tools/image/hub.sh   (root; installs buildah and mmdebstrap when missing)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}
tools=${JUPYTERNETES_TOOLS:-$cache/tools}
python=${PYTHON:-$repo/.venv/bin/python}
out=$cache/image/jupyternetes-hub.oci.tar
context=$repo/build/image-hub
buildah=(buildah --storage-driver vfs)
log() { printf '[image] %s\n' "$*" >&2; }

# shellcheck source=rootfs.sh
source "$repo/tools/image/rootfs.sh"
need_image_tools
packages=python3,python3-venv,ca-certificates
# The hub the tests run and the culler; the spawner's own dependencies come from this package's
# `[spawner]` extra (pyproject.toml, the one list), installed from its wheel.
requirements="jupyterhub==6.1.1
jupyterhub-idle-culler==2.0.0"
node=$(command -v node) || { log "node not found: install Node.js >= 20"; exit 1; }
bash "$repo/tools/harness/hub/build.sh" >&2
cd "$repo"
stamp=$( {
	printf '%s\n%s\n' "$packages" "$requirements"
	"$node" --version
	find jupyternetes pyproject.toml tools/image/hub tools/image/hub.sh tools/harness/hub \
		-type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 cat
} | sha256sum | cut -c1-12)
image=jupyternetes.local/hub:$stamp
if [[ -s $out && "$(cat "$out.image" 2>/dev/null)" == "$image" ]]; then
	log "$image up to date: $out"
	echo "$image"
	exit 0
fi
start=$SECONDS
rootfs=$(make_rootfs "$cache" "$packages")
rm -rf "$context"
mkdir -p "$context/wheels" "$context/node/bin"
ln -f "$rootfs" "$context/rootfs.tar" 2>/dev/null || cp -f "$rootfs" "$context/rootfs.tar"
cp "$node" "$context/node/bin/node"
cp -a "$tools/chp" "$context/node/chp"
printf '%s\n' "$requirements" >"$context/wheels/requirements.txt"
log "wheels: $(tr "\n" " " <"$context/wheels/requirements.txt")+ jupyternetes[spawner]"
"$python" -m pip wheel -q --wheel-dir "$context/wheels" -r "$context/wheels/requirements.txt" \
	"$repo[spawner]"
log "buildah bud -> $image"
"${buildah[@]}" bud --isolation chroot --layers=false -f "$repo/tools/image/hub/Containerfile" \
	-t "$image" "$context" >&2
rm -f "$out.tmp"
"${buildah[@]}" push "$image" "oci-archive:$out.tmp:$image" >&2
"${buildah[@]}" rmi "$image" >/dev/null 2>&1 || true
mv -f "$out.tmp" "$out"
echo "$image" >"$out.image"
rm -rf "$context"
log "built $image in $((SECONDS - start)) s: $out"
echo "$image"
