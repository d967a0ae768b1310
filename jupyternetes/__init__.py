"""Jupyternetes: JupyterHub notebook servers from templates, one Pulumi stack per user server."""

__version__ = "0.1.0"
