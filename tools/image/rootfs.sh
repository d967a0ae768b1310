# Sourced by the image scripts: the Debian bookworm root filesystem every image starts from (no
# image registry here), made by mmdebstrap from Debian's packages and cached.
# make_rootfs CACHE PACKAGES: prints the path of $CACHE/image/rootfs-bookworm-<hash>.tar holding
# a minbase system with PACKAGES (comma-separated), building it when missing.
make_rootfs() {
	local cache=$1 packages=$2 rootfs start
	rootfs=$cache/image/rootfs-bookworm-$(printf '%s' "$packages" | sha256sum | cut -c1-12).tar
	mkdir -p "$cache/image"
	if [[ ! -s $rootfs ]]; then
		printf '[image] making the base root filesystem (Debian bookworm: %s) with mmdebstrap\n' "$packages" >&2
		start=$SECONDS
		# mmdebstrap picks its output format from the file name: keep it ending in .tar.
		mmdebstrap --quiet --variant=minbase --include="$packages" \
			--customize-hook='chroot "$1" apt-get clean' \
			--customize-hook='rm -rf "$1"/var/lib/apt/lists/*' \
			bookworm "$rootfs.partial.tar" http://deb.debian.org/debian >&2
		mv -f "$rootfs.partial.tar" "$rootfs"
		printf '[image] base root filesystem in %s s\n' "$((SECONDS - start))" >&2
	fi
	printf '%s\n' "$rootfs"
}

# need_image_tools: apt-get installs buildah and mmdebstrap when missing (CI starts clean).
# Every apt-get here waits for dpkg's lock (DPkg::Lock::Timeout): a test's fixture may be
# installing PostgreSQL at the same moment.
need_image_tools() {
	local want=() sudo=()
	command -v buildah >/dev/null || want+=(buildah)
	command -v mmdebstrap >/dev/null || want+=(mmdebstrap)
	((${#want[@]})) || return 0
	((EUID == 0)) || sudo=(sudo)
	printf '[image] installing %s\n' "${want[*]}" >&2
	DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends "${want[@]}" >/dev/null ||
		{ "${sudo[@]}" apt-get update -o DPkg::Lock::Timeout=600 -q >/dev/null &&
			DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -o DPkg::Lock::Timeout=600 -y -q --no-install-recommends "${want[@]}" >/dev/null; }
}
