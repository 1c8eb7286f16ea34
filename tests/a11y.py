"""axe-core (vendored from npm, see tests/vendor/VERSIONS.txt) run inside a Playwright page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

AXE = (Path(__file__).resolve().parent / "vendor" / "axe.min.js").read_text(encoding="utf-8")

# Every rule axe runs by default (WCAG 2.0-2.2 A/AA and best practices), plus target size
# (WCAG 2.2 AA, 24 x 24 px), so a small target fails here and not only in a manual check.
RUN = """async () => {
  const result = await axe.run(document, {
    resultTypes: ['violations'],
    rules: {'target-size': {enabled: true}},
  });
  return result.violations.map((v) => ({
    id: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => n.target.join(' ') + ' | ' + (n.failureSummary || '')),
  }));
}"""


def violations(page: Page) -> list[dict[str, Any]]:
    """axe's violations on the page as it is now; evaluated, not injected as a script tag,
    so the app's CSP stays exactly as strict as it is for real visitors."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(AXE)
    found: list[dict[str, Any]] = page.evaluate(RUN)
    return found


def summary(found: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']}\n  " + "\n  ".join(v["nodes"][:4]) for v in found
    )
