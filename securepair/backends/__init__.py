"""TLS libraries behind a :class:`~securepair.SecurePair`, one module each."""
