"""The images stage: verify, resize, re-encode and hash fetched images in a CPU pool.

``geometry`` says what size an image becomes (pure), ``transform`` does one image's work in a
worker (pure: bytes in, :class:`transform.ImageResult` out), ``pool`` runs transforms in
threads (or processes) beside the event loop, and ``stage`` is the
:class:`fetchshard.engine.stages.Stage` that turns a fetched row into the stored one.
"""
