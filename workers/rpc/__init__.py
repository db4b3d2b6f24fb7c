"""Query RPC over Redis lists: wire format, serving loop, handlers and clients (no Django)."""
