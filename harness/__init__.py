"""Development harness: a real control plane and the real Pulumi engine on loopback, for tests
and demos. Binaries are built by tools/harness/build.sh into the cache folder (see paths.py)."""
