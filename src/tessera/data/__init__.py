"""Synthetic sample data shipped with Tessera, for the demo, notebooks and tests.

:mod:`tessera.data.medical` holds four hospitals' ``patients`` tables and their public
bounds. Nothing here is real patient data.
"""
