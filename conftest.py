import pytest

# Root conftest: registers the end-to-end fixtures (cluster, namespace, Pulumi environment,
# loopback node + pod runner, JupyterHub).
# They are lazy, so unit tests never start a cluster.
pytest_plugins = [
    "tests.e2e.fixtures_cluster", "tests.e2e.fixtures_pulumi", "tests.e2e.fixtures_hub",
    "tests.e2e.fixtures_postgres", "tests.e2e.fixtures_node",
]


# tryfirst: xdist's own hook on each worker turns the xdist_group marks into the node ids'
# "@group" suffix, which is what --dist loadgroup schedules by; it must see our marks.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`make test` runs two workers) a module runs whole on one worker, so its
    module-scoped cluster, operator or hub starts once; the real node's tests share one worker
    because only one real node can run per machine, and go first: they are the longest group
    (node start, image import), so the other worker takes the rest meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("realnode") is None)  # stable
    for item in items:
        group = "realnode" if item.get_closest_marker("realnode") else item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))
