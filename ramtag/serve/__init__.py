"""``ramtag serve``: the model resident behind HTTP, requests batched together.

Layers, importing downwards only: ``security`` and ``metrics`` (no ramtag imports), ``batcher``
(gathers images into model batches), ``service`` (decoding, limits, answers: no HTTP), ``photoprism``
(PhotoPrism's Vision API shapes), ``page`` (the HTML), ``app`` (FastAPI routes, the only module that
imports FastAPI). The command itself is ``cli/serve.py``; FastAPI and uvicorn are the ``serve`` extra.
"""
