"""lgrpo.experiments."""
