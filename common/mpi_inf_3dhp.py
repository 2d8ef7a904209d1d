"""MPI-INF-3DHP readers (registered into common.datasets)."""
