#!/usr/bin/env bash
# Makes sure a PostgreSQL server (initdb + postgres) is installed for the e2e harness
# (jupyternetes/harness/postgres.py starts its own throw-away server; nothing here starts one).
# Idempotent and quick when it is already there. Installs Debian's `postgresql` with apt-get
# when missing and this runs as root; otherwise says what to install.
set -euo pipefail

have_server() {
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ] && return 0
    done
    command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1
}

if have_server; then
    echo "postgres: server binaries present"
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "postgres: no PostgreSQL server found (initdb, postgres); install Debian's" \
         "'postgresql' package (apt-get install postgresql) or put its bin dir on PATH" >&2
    exit 1
fi
# No system cluster: the harness runs its own server per test session, on a free port.
mkdir -p /etc/postgresql-common
[ -e /etc/postgresql-common/createcluster.conf ] ||
    echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf
export DEBIAN_FRONTEND=noninteractive
apt_install() {
    apt-get install -o DPkg::Lock::Timeout=600 -y --no-install-recommends -o Dpkg::Options::=--force-confold postgresql
}
apt_install || { apt-get update -o DPkg::Lock::Timeout=600 && apt_install; }
have_server || { echo "postgres: installed, but no initdb/postgres found" >&2; exit 1; }
echo "postgres: installed"
