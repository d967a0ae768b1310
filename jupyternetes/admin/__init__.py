"""What an admin runs before and after a change.

- preview: what the next `up` would change for one instance
- fleet: what a template edit does to every server that uses it (pure)
- fleetpreview: `jupyternetes preview --template`, fleet-wide
- lint: what would fail before anyone spawns
- migrate: `jupyternetes migrate-kubespawner`, a z2jh singleuser block as a template
"""
