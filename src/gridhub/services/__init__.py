"""Use cases on top of storage and access: queries, (later) subscriptions, commands, tariffs."""
