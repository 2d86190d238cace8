"""Workstream spec: models (``models``), loaders (``load``), scope patterns (``scope``), the
legacy bundle reader (``legacy``) and converter (``convert``).

Nothing is imported here: importing ``uet_git.spec.scope`` (e.g. for ``uet status``) must not
pay for pydantic, yaml and the legacy reader (~100 ms). Import the submodule you need.
"""
