"""A TLS front for plaintext services: what ``securepair serve`` runs.

Layers, each importing only the ones above it in this list:

* :mod:`.allowlist` -- which client addresses may connect.
* :mod:`.proxy_protocol` -- HAProxy's PROXY protocol v1 and v2 headers.
* :mod:`.settings` -- the options of ``serve``, from flags or TOML, checked.
* :mod:`.log` -- plain or JSON log lines.
* :mod:`.relay` -- one connection: PROXY header, ClientHello, TLS, relay.
* :mod:`.listener` -- accepting, limits, timeouts, graceful stop, workers.
"""
