"""pytest plugin: writeshape servers as fixtures, measured figures in extra_info."""
