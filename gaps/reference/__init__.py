"""The wsgaps reference server, built on ``websockets``: every capability, each switchable off.

Run it as a subprocess like any target: ``python -m gaps.reference --port N``.  One module per
capability; ``--without heartbeat,...`` switches capabilities off and ``--profile seed``
reproduces the seed document's proof-of-concept app with every capability off.

``--defect LIST`` (``config.DEFECTS``) switches on deliberately defective modes for the
harness's own tests, so that every check is shown to fail: message-type defects in
``echo.py``, subprotocol defects in ``subprotocols.py``, handshake ones in ``errors.py``, the
chat one in ``seed.py``, frame-level ones in ``defects.py``.
The default run has none.
"""
