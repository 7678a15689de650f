"""lgrpo.analysis."""
