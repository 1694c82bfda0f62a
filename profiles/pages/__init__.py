"""What the server-rendered pages need beside the views.

- `access`: which tenants a logged-in user may see; every page view goes through it.
- `data`: a stored profile's analysis data (its gzip payload) for the pages.
- `flamegraph`: the flame graph as server-rendered SVG plus the node table its script zooms.
- `charts`: server-rendered SVG trend charts.
- `formatting`: values in a profile's unit, for people.
"""
