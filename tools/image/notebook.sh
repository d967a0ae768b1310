#!/usr/bin/env bash
# Builds the notebook image (tools/image/notebook/Containerfile) with buildah, offline from any
# image registry, and writes it as an OCI archive the real node imports into containerd:
#   <cache>/image/jupyternetes-notebook.oci.tar, named jupyternetes.local/notebook:<stamp>.
#   1. base root filesystem: Debian bookworm with python3 (rootfs.sh, shared with the operator);
#   2. wheels of the project's `hub` extra (pyproject.toml: the same jupyterhub the tests run),
#      downloaded from PyPI by the host's pip for the image's Python (3.11, manylinux);
#   3. `buildah bud`, `buildah push oci-archive:`.
# Rebuilt only when the Containerfile, the requirements or the base change (a stamp).
# Usage: tools/image/notebook.sh   (root; installs buildah and mmdebstrap when missing)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
cache=${JUPYTERNETES_CACHE:-$HOME/.cache/jupyternetes}
python=${PYTHON:-$repo/.venv/bin/python}
out=$cache/image/jupyternetes-notebook.oci.tar
context=$repo/build/image-notebook
buildah=(buildah --storage-driver vfs)
log() { printf '[image] %s\n' "$*" >&2; }

# shellcheck source=rootfs.sh
source "$repo/tools/image/rootfs.sh"
need_image_tools
packages=python3,python3-venv,ca-certificates
requirements=$("$python" -c 'import tomllib, sys
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["hub"]))' \
	"$repo/pyproject.toml")
stamp=$(printf '%s\n%s\n' "$packages" "$requirements" | cat - "$repo/tools/image/notebook/Containerfile" | sha256sum | cut -c1-12)
image=jupyternetes.local/notebook:$stamp
if [[ -s $out && "$(cat "$out.image" 2>/dev/null)" == "$image" ]]; then
	log "$image up to date: $out"
	exit 0
fi
start=$SECONDS
rootfs=$(make_rootfs "$cache" "$packages")
rm -rf "$context"
mkdir -p "$context/wheels"
ln -f "$rootfs" "$context/rootfs.tar" 2>/dev/null || cp -f "$rootfs" "$context/rootfs.tar"
printf '%s\n' "$requirements" >"$context/wheels/requirements.txt"
log "downloading wheels: $(tr '\n' ' ' <"$context/wheels/requirements.txt")"
"$python" -m pip download -q --dest "$context/wheels" --only-binary=:all: \
	--python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
	--platform manylinux_2_36_x86_64 --platform manylinux_2_28_x86_64 \
	--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
	-r "$context/wheels/requirements.txt"
log "buildah bud -> $image"
"${buildah[@]}" bud --isolation chroot --layers=false -f "$repo/tools/image/notebook/Containerfile" \
	-t "$image" "$context"
rm -f "$out.tmp"
"${buildah[@]}" push "$image" "oci-archive:$out.tmp:$image"
"${buildah[@]}" rmi "$image" >/dev/null || true
mv -f "$out.tmp" "$out"
echo "$image" >"$out.image"
rm -rf "$context"
log "built $image in $((SECONDS - start)) s: $out"
