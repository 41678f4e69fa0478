"""The seed corpus: the documents shipped in ``pipeline/data/seeds``, cleaned to plain text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any

from pipeline import yamlfile
from pipeline.extract import extract_page

_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
# Site-builder anchors that some exported pages carry as their first and last lines.
_PAGE_ANCHORS = re.compile(r"^\s*(top of page|bottom of page)\s*", re.IGNORECASE)


@dataclass(frozen=True)
class SeedDocument:
    """One seed, ready to be stored."""

    name: str
    title: str | None
    text: str
    url: str | None
    published_at: datetime | None


def load_seed_documents() -> list[SeedDocument]:
    """Every shipped seed document, in file-name order."""
    folder = resources.files("pipeline") / "data" / "seeds"
    documents = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".txt"):
            documents.append(parse_seed(entry.name, entry.read_text(encoding="utf-8")))
    return documents


def parse_seed(name: str, raw: str) -> SeedDocument:
    """Clean one seed file: front matter becomes metadata, HTML becomes article text."""
    stem = name.rsplit(".", 1)[0]
    meta: dict[str, Any] = {}
    body = raw
    match = _FRONT_MATTER.match(raw)
    if match:
        loaded = yamlfile.safe_load(match.group(1))
        meta = loaded if isinstance(loaded, dict) else {}
        body = raw[match.end() :]
    if re.search(r"<(div|p|article|span)\b", body, re.IGNORECASE):
        text = _html_to_text(body, title=meta.get("title"))
    else:
        text = body
    text = _strip_anchors(text)
    title = str(meta["title"]).strip() if meta.get("title") else _first_line(text)
    return SeedDocument(
        name=stem,
        title=title,
        text=text,
        url=str(meta["from"]) if meta.get("from") else None,
        published_at=_as_datetime(meta.get("date")),
    )


def _html_to_text(body: str, *, title: Any) -> str:
    # Markdown-style heading lines (a link and an underline) precede the HTML in exported
    # posts; they repeat the title, so drop them before extraction.
    html_start = re.search(r"<(div|p|article|section|html|body)\b", body, re.IGNORECASE)
    fragment = body[html_start.start() :] if html_start else body
    document = f"<html><head><title>{title or ''}</title></head><body>{fragment}</body></html>"
    page = extract_page(document.encode("utf-8"), content_type="text/html; charset=utf-8", favor_recall=True)
    if page.error or not page.text.strip():
        raise ValueError(f"seed HTML yielded no text: {page.error}")
    return str(page.text)


def _strip_anchors(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    while lines and (not lines[0].strip() or _PAGE_ANCHORS.fullmatch(lines[0])):
        lines.pop(0)
    while lines and (not lines[-1].strip() or _PAGE_ANCHORS.fullmatch(lines[-1])):
        lines.pop()
    if lines:
        # An anchor glued to the end of the last line (no newline before it in the export).
        lines[-1] = re.sub(r"\s*bottom of page\s*$", "", lines[-1], flags=re.IGNORECASE)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def _first_line(text: str) -> str | None:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return None


def _as_datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None
