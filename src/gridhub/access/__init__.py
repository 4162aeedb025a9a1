"""Access: tokens, tenant scoping (and, later, owner policies, contracts, audit)."""
