"""Scaling reports: the versioned JSON schema (``model``), its markdown and HTML renderings, the figure panels'
drawing helpers, and the writer that picks a rendering by file extension (``files``)."""
