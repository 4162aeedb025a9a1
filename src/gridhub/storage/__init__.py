"""Storage: the :class:`~gridhub.storage.base.Store` protocol and its backends."""
