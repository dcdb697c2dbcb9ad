"""The front door: the ASGI entry, routes, HTTP assets (the pixel, the demo)."""
