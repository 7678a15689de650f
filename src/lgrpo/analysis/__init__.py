"""lgrpo.analysis: reading runs.

- :mod:`~lgrpo.analysis.rollouts`: stream ``rollouts.jsonl`` one step at a time, into :mod:`lgrpo.process` tensors.
- :mod:`~lgrpo.analysis.analyze`: ``lgrpo analyze``, per-step implicit-PRM statistics (``prm_stats.json``/``.png``).
- :mod:`~lgrpo.analysis.inspect`, :mod:`~lgrpo.analysis.html`: ``lgrpo inspect``, the self-contained process-tree page.
- :mod:`~lgrpo.analysis.browser`: headless Chromium (screenshots, the DOM after scripts ran).
- :mod:`~lgrpo.analysis.report`: ``lgrpo report``, runs overlaid by arm with seeds as mean and band.
"""
