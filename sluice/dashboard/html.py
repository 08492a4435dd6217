"""HTML for the dashboard's pages: the layout (navigation, live refresh) and tables.

Plain server-rendered HTML: a page's content sits in ``<main id="content">``, which a
few lines of script fetch again every second (the request carries ``X-Fragment: 1``, and
the server answers with the content alone) unless the reader paused it or is selecting
text: the htmx way, without a JavaScript build.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import Any
from urllib.parse import urlencode

STYLE = """
body { font-family: Helvetica, Arial, sans-serif; margin: 0; color: #222; }
header { background: #1f3a5f; color: white; padding: 8px 16px; display: flex;
         align-items: center; gap: 18px; flex-wrap: wrap; }
header a { color: #dfe8f5; text-decoration: none; font-size: 14px; }
header a.here { color: white; font-weight: bold; border-bottom: 2px solid #f0a030; }
header .brand { font-weight: bold; font-size: 17px; color: white; margin-right: 8px; }
header .live { margin-left: auto; font-size: 12px; }
main { padding: 12px 16px; }
h1 { font-size: 20px; margin: 4px 0 12px; } h2 { font-size: 16px; margin: 18px 0 8px; }
table { border-collapse: collapse; font-size: 13px; margin-bottom: 12px; }
th, td { border: 1px solid #d0d7de; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.state-FAILED, .state-DEAD, .state-ERROR { color: #b42318; font-weight: bold; }
.state-RUNNING, .state-ALIVE { color: #1a7f37; font-weight: bold; }
.state-FINISHED, .state-SUCCEEDED { color: #444; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 8px; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: 8px 12px; min-width: 130px; }
.card .value { font-size: 22px; font-weight: bold; } .card .label { font-size: 12px; color: #555; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 8px; overflow-x: auto;
      font-size: 12px; }
form.filters { margin-bottom: 10px; font-size: 13px; }
form.filters input, form.filters select { margin-right: 8px; }
.bar { background: #e6eaf0; width: 160px; height: 10px; display: inline-block; }
.bar span { background: #2f7d4f; height: 10px; display: block; }
.muted { color: #666; font-size: 12px; }
svg { max-width: 100%; height: auto; }
"""

SCRIPT = """
(function () {
  var paused = false;
  var toggle = document.getElementById('live');
  if (toggle) toggle.addEventListener('change', function () { paused = !toggle.checked; });
  setInterval(function () {
    var selecting = window.getSelection && String(window.getSelection()).length > 0;
    if (paused || selecting || document.hidden) return;
    fetch(window.location.href, {headers: {'X-Fragment': '1'}, credentials: 'same-origin'})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (html !== null) {
          document.getElementById('content').innerHTML = html;
          document.body.setAttribute('data-refreshed', String(Date.now()));
        }
      }).catch(function () {});
  }, 1000);
})();
"""


def layout(title: str, nav: Sequence[tuple[str, str]], here: str, body: str) -> str:
    """A whole page: ``nav`` is (path, title) per page, ``here`` the current path."""
    links = "".join(f'<a href="{escape(path)}"{" class=here" if path == here else ""}>'
                    f"{escape(name)}</a>" for path, name in nav)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)} - "
            f"sluice</title><style>{STYLE}</style></head><body>"
            f"<header><span class=brand>sluice</span>{links}<label class=live>"
            f"<input type=checkbox id=live checked> live</label></header>"
            f"<main id=content>{body}</main><script>{SCRIPT}</script></body></html>")


def cell(value: Any) -> str:
    """One value as table-cell text (numbers right-aligned, None empty)."""
    if value is None:
        return "<td></td>"
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, float):
        return f"<td class=num>{value:.4g}</td>"
    if isinstance(value, int):
        return f"<td class=num>{value}</td>"
    if isinstance(value, Mapping):
        value = ", ".join(f"{k}: {size(int(v))}" if k in ("memory", "object_store_memory") else
                          f"{k}: {v:g}" if isinstance(v, float) else f"{k}: {v}"
                          for k, v in value.items())
    text = escape(str(value))
    return f"<td class='state-{text}'>{text}</td>" if text.isupper() else f"<td>{text}</td>"


def table(rows: Iterable[Mapping[str, Any]], columns: Sequence[str],
          link: tuple[str, str] | None = None, empty: str = "none") -> str:
    """A table of ``rows`` showing ``columns``; ``link`` = (column, url prefix) makes that
    column's values links to ``prefix + value``."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for column in columns:
            value = row.get(column)
            if link is not None and column == link[0] and value is not None:
                cells.append(f'<td><a href="{escape(link[1] + str(value))}">'
                             f"{escape(str(value))}</a></td>")
            else:
                cells.append(cell(value))
        body.append(f"<tr>{''.join(cells)}</tr>")
    if not body:
        return f"<p class=muted>{escape(empty)}</p>"
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def cards(items: Iterable[tuple[str, Any]]) -> str:
    """A row of figures, each a big value over its label."""
    return "<div class=cards>" + "".join(
        f"<div class=card><div class=value>{escape(str(value))}</div>"
        f"<div class=label>{escape(label)}</div></div>" for label, value in items) + "</div>"


def filter_form(fields: Mapping[str, str], choices: Mapping[str, Sequence[str]] | None = None,
                ) -> str:
    """A GET form with a text box (or a choice) per field, keeping the current values."""
    parts = []
    for name, value in fields.items():
        options = (choices or {}).get(name)
        if options is not None:
            opts = "".join(f"<option{' selected' if o == value else ''}>{escape(o)}</option>"
                           for o in ("", *options))
            parts.append(f"<label>{escape(name)} <select name={escape(name)}>{opts}</select>"
                         f"</label>")
        else:
            parts.append(f"<label>{escape(name)} <input name={escape(name)} "
                         f"value='{escape(value)}' size=14></label>")
    return f"<form class=filters method=get>{''.join(parts)}<button>filter</button></form>"


def query_string(params: Mapping[str, Any]) -> str:
    """``?a=1&b=2`` of the non-empty ``params`` ('' when none)."""
    kept = {k: v for k, v in params.items() if v not in (None, "")}
    return "?" + urlencode(kept) if kept else ""


def size(num: int | None) -> str:
    """Bytes as a short figure: 512 B, 3.1 MB."""
    if num is None:
        return ""
    value = float(num)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"
