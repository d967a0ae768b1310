"""Where stacks' state lives, and repairing what a killed Pulumi CLI left behind.

- backendurl: the backend URL and keeping its password out of every text
- statedirs: the file:// backend's hash buckets
- stackseed: a new stack without a `pulumi stack init` process
- diystate: repair of half-written files in a file:// backend
- pgstate: stale locks and crashed operations in a postgres:// backend
- locks: when a stack lock may be removed (only when its writer is gone)
- repair: state repair at start and per stack
"""
