"""Pure types and rules of gridhub, without any I/O."""
