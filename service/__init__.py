"""The scoring service: FastAPI over the `fraudvae` library's public API (never the reverse).

`service.app:app` (uvicorn, model directory from ``FRAUDVAE_MODEL``) or ``fraudvae serve``.
"""
