"""The wsgaps reference server, built on ``websockets``: every capability, each switchable off.

Run it as a subprocess like any target: ``python -m gaps.reference --port N``.  One module per
capability; ``--without heartbeat,...`` switches capabilities off and ``--profile seed``
reproduces the seed document's proof-of-concept app with every capability off.
"""
