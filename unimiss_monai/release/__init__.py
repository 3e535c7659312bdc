"""Releases of the bundles: reproducible model-zoo style zips with an index (``package-bundle``,
``release-official``), verified downloads (``download``) and the model-zoo checks (``verify-bundles``).

Modules are imported by the command that needs them; nothing is imported here so ``python -m unimiss_monai`` stays
fast.
"""
