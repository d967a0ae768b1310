"""The deploy stack's entry point (Pulumi.yaml `main: stacks/`): installs Jupyternetes.

The program lives in the package (jupyternetes/deploy/) so that its pure parts are unit-tested
and ruff-checked like the rest of the code; read it there.
"""

from jupyternetes.deploy.program import main

main()
