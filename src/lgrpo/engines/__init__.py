"""lgrpo.engines."""
