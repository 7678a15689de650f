"""lgrpo.evaluation."""
