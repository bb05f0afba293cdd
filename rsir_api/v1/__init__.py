"""Generated code of ``rsir.api.v1``; do not edit, regenerate with ``python -m services.common.protogen``."""
