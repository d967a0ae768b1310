"""The Pulumi edge: one Pulumi stack per user server, run through the Automation API.

One concern a module:

- settings: StackSettings (backend, passphrase, kubeconfig) and the environment every Pulumi
  CLI run gets; backendurl: where the backend URL comes from, its password kept out of texts
- program: the inline program (rendered objects -> Kubernetes resources of one stack)
- worker + operation + events + command: the long-lived process that runs operations (each
  in a thread), one operation, its events as data, the CLI minus the read-backs it can answer
- pool + protocol: the worker processes (start, send, cancel, recycle) and their messages
- repair, locks, diystate, pgstate, stackseed, workspaces: state repair after a crash (stale
  locks, half-written files, pending operations), and state written without a CLI run
- statedirs: where a stack's state lives in the operator's file:// backend (hash buckets)
- masking: secrets out of messages (pure); results: what an operation answers (pure)
- stackengine: StackEngine, the public API: up / preview / destroy / repair (a refresh that
  clears pending creates) / forget / list_stacks

Import the public API from here; the modules above are its parts.
"""

from jupyternetes.engine.results import OperationResult, PreviewResult, PreviewStep
from jupyternetes.engine.settings import (
    PROJECT,
    StackConfigError,
    StackSettings,
    add_stack_arguments,
    settings_from_args,
)
from jupyternetes.engine.stackengine import StackEngine

__all__ = [
    "PROJECT",
    "OperationResult",
    "PreviewResult",
    "PreviewStep",
    "StackConfigError",
    "StackEngine",
    "StackSettings",
    "add_stack_arguments",
    "settings_from_args",
]
