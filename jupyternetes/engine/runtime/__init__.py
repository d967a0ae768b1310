"""How stack operations run: long-lived worker processes driving the Automation API.

- pool: starting workers, sending them operations, recycling them
- protocol: what the engine and its workers say to each other (imported by both sides)
- worker: `python -m jupyternetes.engine.runtime.worker`, the worker process
- operation: one stack operation (up, preview, destroy, forget, repair)
- listing: `pulumi stack ls` of every stack, bounded in time
- program: the inline Pulumi program of one instance stack
- command: the worker's Pulumi CLI (Pulumi's own `PulumiCommand`)
- events: an operation's engine events as plain data
- prewarm: the create guard's Kubernetes client, ready while the CLI starts
- workspaces: temporary workspace folders and the sweep of dead workers' ones
- engineprocs: which worker process runs which stack's operation
- procs: process facts read from /proc
"""
