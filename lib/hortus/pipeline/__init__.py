"""Pipeline: the entry points of the DVC stages."""
