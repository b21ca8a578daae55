"""The verification web page: network presets for it, and `okai web`, its static server."""
