"""Markdown to safe HTML: headings placed under the page's own, in one outline; the score chart."""

from __future__ import annotations

from server.render import REPORT_HEADINGS, markdown, score_chart
from server.views import Score


def test_a_reports_sections_sit_one_level_below_its_own_heading() -> None:
    body = "# Report\n\n## Summary\n\nText.\n\n### Detail\n\nMore.\n\n#### Deep\n\n##### Deeper"
    rendered = str(markdown(body, top=REPORT_HEADINGS))
    assert "<h3>Report</h3>" in rendered and "<h3>Summary</h3>" in rendered
    assert "<h4>Detail</h4>" in rendered and "<h5>Deep</h5>" in rendered
    assert "<h6>Deeper</h6>" in rendered
    # Elsewhere headings start at h2, below the page's h1.
    assert "<h2>Report</h2>" in str(markdown("# Report")) and "<h1>" not in str(markdown("# R"))


def test_a_score_without_evidence_is_drawn_without_a_bar() -> None:
    svg = str(score_chart([("Risk tolerance", 7), ("Fairness", None)]))
    assert svg.count('class="chart-bar"') == 1
    assert "not enough to go on" in svg
    assert "Fairness: not enough to go on" in svg  # the title read by screen readers
    assert "None" not in svg
    assert Score("Fairness", None, "").shown == "not enough to go on"
    assert Score("Fairness", 4, "").shown == "4/10"
