"""lgrpo.tasks."""
