"""kopf handlers: read the world, call the pure decision modules, write the result."""
