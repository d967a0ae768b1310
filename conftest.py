# Root conftest: registers the end-to-end fixtures (cluster, namespace, Pulumi environment,
# loopback node + pod runner, JupyterHub).
# They are lazy, so unit tests never start a cluster.
pytest_plugins = [
    "tests.e2e.fixtures_cluster", "tests.e2e.fixtures_pulumi", "tests.e2e.fixtures_hub",
    "tests.e2e.fixtures_postgres", "tests.e2e.fixtures_node",
]
