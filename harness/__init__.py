"""Development harness (not shipped in the wheel): a real control plane and the real Pulumi
engine on this machine, for tests, demos and benchmarks. Binaries are built by
tools/harness/build.sh into the cache folder (paths.py).

- paths: where the Go-built tools and harness state live
- cluster: a throwaway control plane on 127.0.0.1 (apiserver, etcd, controller-manager,
  scheduler, kwok), `python -m harness.cluster up|env|down`
- crds: install the CRDs and wait until they are Established
- pulumi_env: the environment for the harness-built Pulumi CLI and provider
- operator_process: `jupyternetes operator` as a subprocess
- podrunner, podenv, runtime_status: the loopback node's container runtime (pods as processes)
- hub: a real JupyterHub with the real configurable-http-proxy
- postgres: a throwaway PostgreSQL server (the postgres:// state backend)
- examples: the repository's example resources, ready to create
- demo, demo_hub: `make demo`, `make demo-hub`
"""
