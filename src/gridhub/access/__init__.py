"""Access (A1–A5): tokens, stakeholders, contracts, owner policies, the enforcement point
(``enforce.AccessControl``, which every read path calls) and the audit log. See docs/access.md."""
