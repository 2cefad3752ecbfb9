"""A story as one self-contained, printable HTML file (no scripts, no external assets).

Each step names the trace and span it was told from, and the page says when it was generated
(and, inside an evidence bundle, the bundle's id), so a printed story can be matched to the record.
"""

from __future__ import annotations

from datetime import datetime, timezone
from html import escape

from flightrec.stories.models import Story

SEVERITY_COLORS = {"info": "#4b5563", "notice": "#1d4ed8", "warning": "#b45309", "critical": "#b91c1c"}
STYLE = """
body{font:15px/1.5 system-ui,-apple-system,Segoe UI,sans-serif;max-width:900px;margin:2em auto;color:#111827}
h1{font-size:1.5em;margin-bottom:.2em}.meta{color:#6b7280}.summary{font-size:1.05em}
.status{display:inline-block;padding:.1em .6em;border-radius:1em;background:#e5e7eb;font-weight:600}
ol{padding-left:1.2em}li{margin:.45em 0;padding-left:.4em;border-left:4px solid var(--c)}
.time{color:#6b7280;font-variant-numeric:tabular-nums}.kind{font-size:.8em;color:#6b7280;text-transform:uppercase}
.ids{display:block;font:.75em ui-monospace,monospace;color:#6b7280}
@media print{body{margin:0}li{break-inside:avoid}}
"""


def story_html(story: Story, *, generated_at: datetime | None = None, bundle_id: str = "") -> str:
    """Render a story for people to read, keep, and print (``bundle_id``: the evidence bundle it is in)."""
    steps = "\n".join(
        f'<li style="--c:{SEVERITY_COLORS[step.severity]}"><span class="time">{step.time:%Y-%m-%d %H:%M:%S}</span> '
        f'<span class="kind">{escape(step.kind)}</span><br>{escape(step.sentence)}'
        f'<span class="ids">trace {escape(step.trace_id)} · span {escape(step.span_id)}</span></li>'
        for step in story.steps
    )
    title = f"{story.object.type.capitalize()} {story.object.id}"
    moment = (generated_at or datetime.now(tz=timezone.utc)).astimezone(timezone.utc)
    generated = f"Generated {moment:%Y-%m-%d %H:%M:%S} UTC" + (f" · evidence bundle {escape(bundle_id)}" if bundle_id else "")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)} — Flight Recorder story</title>
<style>{STYLE}</style></head><body>
<h1>{escape(title)}</h1>
<p class="meta">Flight Recorder story · {story.first_seen:%Y-%m-%d %H:%M} to {story.last_seen:%Y-%m-%d %H:%M} UTC ·
agents: {escape(", ".join(story.agents))} · <span class="status">{escape(story.status)}</span></p>
<p class="summary">{escape(story.summary)}</p>
<p><strong>Outcome.</strong> {escape(story.outcome)}</p>
<h2>What happened, step by step</h2>
<ol>
{steps}
</ol>
<p class="meta">{generated}</p>
</body></html>
"""
