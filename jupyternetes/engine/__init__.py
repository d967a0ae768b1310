"""The Pulumi edge: one Pulumi stack per user server, run through the Automation API.

The public API is this package's own modules; how operations run and where state lives are
its two subpackages:

- stackengine: StackEngine: up / preview / destroy / repair (a refresh that clears pending
  creates) / forget / list_stacks
- settings: StackSettings (backend, passphrase, kubeconfig) and the environment every Pulumi
  CLI run gets
- results: what an operation answers (pure)
- masking: secrets out of every text that leaves the engine or the operator (pure)
- runtime/: worker processes, one operation, the inline program, events, the CLI
- state/: backend URL, state folders, stack seed, DIY/postgres state, locks, repair

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
