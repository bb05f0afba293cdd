"""Generated gRPC/protobuf code of the RSIR API (proto package ``rsir.api.v1``).

Everything under ``rsir_api/v1/`` except ``__init__.py`` is generated from ``protos/rsir_api/v1``
by ``python -m services.common.protogen`` and committed; ``tests/services/test_protos.py`` fails
when the committed code and the ``.proto`` files drift apart.
"""
