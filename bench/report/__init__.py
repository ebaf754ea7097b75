"""The reporter: leaderboards, figures and an HTML page from the runs that ``bench run`` recorded.

``bench run`` calls ``build_report`` when its runs finish; ``bench report`` calls it on demand.
The data path: ``runs`` (read, filter) → ``aggregate`` (seeds → mean ± std, Δ, rank) →
``reference`` (published numbers) → ``display`` (cells) → ``markdown`` / ``console`` / ``plots`` / ``html``.
"""

from bench.report.build import build_report

__all__ = ["build_report"]
