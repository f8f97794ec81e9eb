"""The explorer's own style and scripts, inlined in its pages (no remote scripts, fonts or styles), and the one
way it embeds data in a page's ``<script>``."""

from __future__ import annotations

import json

CSS = """<style>
.ov{position:relative;display:inline-block;line-height:0;vertical-align:top;margin:1px}
.ov img{display:block;margin:0;width:96px;height:auto;max-width:none}
.ov img.map{position:absolute;left:0;top:0;opacity:.5}
figure .ov img{width:160px}
#lightbox{position:fixed;inset:0;background:rgba(0,0,0,.82);display:flex;flex-direction:column;align-items:center;
justify-content:center;z-index:10;cursor:zoom-out}
#lightbox .ov img{width:min(80vw,75vh)}#lightbox p{color:#fff}
.bar{display:inline-block;height:.8em;vertical-align:middle}.bar.me{background:#c0392b}.bar.pop{background:#95a5a6}
th[data-type]{cursor:pointer}th[aria-sort=ascending]::after{content:" \\25B2"}
th[aria-sort=descending]::after{content:" \\25BC"}
.controls{display:flex;flex-wrap:wrap;gap:.5em 1.2em;align-items:center;margin:.6em 0}
.pics{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}figure{margin:0}
.specific.unvalidated h3{color:#a33}.specific{border-left:3px solid #ccc;padding-left:.8em}
figcaption{font-size:.8em;color:#555;max-width:170px}td.photo{min-width:9em;max-width:14em;overflow-wrap:anywhere}
h1,nav{overflow-wrap:anywhere}#people td:first-child{max-width:18em;overflow-wrap:anywhere}
</style>"""

INDEX_JS = """<script>
(function () {
  "use strict";
  var meta = JSON.parse(document.getElementById("explore-meta").textContent);
  var table = document.getElementById("people"), body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var heads = table.tHead.rows[table.tHead.rows.length - 1].cells;
  var search = document.getElementById("search"), model = document.getElementById("model");
  var attrs = Array.prototype.slice.call(document.querySelectorAll("select[data-attr]"));
  var shown = document.getElementById("shown");
  var sortCol = meta.sort, sortDir = -1, byDefault = true;
  function key(row, col) {
    var cell = row.cells[col], v = cell.getAttribute("data-v");
    if (v === null) return cell.textContent.toLowerCase();
    return v === "" ? null : parseFloat(v);
  }
  function sort() {
    rows.sort(function (a, b) {
      var x = key(a, sortCol), y = key(b, sortCol);
      if (x === null || y === null) return x === y ? 0 : (x === null ? 1 : -1);
      return x < y ? -sortDir : (x > y ? sortDir : 0);
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < heads.length; i++) {
      heads[i].setAttribute("aria-sort", i === sortCol ? (sortDir > 0 ? "ascending" : "descending") : "none");
    }
  }
  function values(row, select) {
    return JSON.parse(row.getAttribute("data-a" + select.getAttribute("data-attr")) || "[]");
  }
  function filter() {
    var q = search.value.trim().toLowerCase(), m = model.value, n = 0;
    rows.forEach(function (r) {
      var ok = r.cells[0].textContent.toLowerCase().indexOf(q) >= 0;
      if (ok && m !== "") ok = JSON.parse(r.getAttribute("data-m")).indexOf(Number(m)) >= 0;
      attrs.forEach(function (s) { if (ok && s.value !== "") ok = values(r, s).indexOf(s.value) >= 0; });
      r.hidden = !ok;
      if (ok) n++;
    });
    shown.textContent = n + " of " + rows.length;
  }
  function showModel() {
    var m = model.value, cells = table.querySelectorAll("[data-model]");
    for (var i = 0; i < cells.length; i++) cells[i].hidden = m !== "" && cells[i].getAttribute("data-model") !== m;
    if (byDefault) { sortCol = m === "" ? meta.sort : meta.distance[Number(m)]; sortDir = -1; sort(); }
    filter();
  }
  Array.prototype.forEach.call(heads, function (th, i) {
    th.addEventListener("click", function () {
      if (sortCol === i) sortDir = -sortDir;
      else { sortCol = i; sortDir = th.getAttribute("data-type") === "text" ? 1 : -1; }
      byDefault = false;
      sort();
    });
  });
  search.addEventListener("input", filter);
  model.addEventListener("change", showModel);
  attrs.forEach(function (s) { s.addEventListener("change", filter); });
  sort();
  showModel();
})();
</script>"""

PERSON_JS = """<script>
(function () {
  "use strict";
  var box = null;
  function close() { if (box) { box.remove(); box = null; } }
  document.addEventListener("click", function (e) {
    var a = e.target.closest ? e.target.closest("a.zoom") : null;
    if (!a) { close(); return; }
    e.preventDefault();
    close();
    box = document.createElement("div");
    box.id = "lightbox";
    var big = a.cloneNode(true);
    big.className = "ov";
    Array.prototype.forEach.call(big.querySelectorAll("img"), function (im) { im.removeAttribute("loading"); });
    var caption = document.createElement("p");
    caption.textContent = a.getAttribute("title") || "";
    box.appendChild(big);
    box.appendChild(caption);
    document.body.appendChild(box);
  });
  document.addEventListener("keydown", function (e) { if (e.key === "Escape") close(); });
})();
</script>"""


def script_json(obj: object) -> str:
    """``obj`` as JSON to embed in a ``<script type="application/json">``: ``<``, ``>`` and ``&`` (and the line
    separators U+2028/2029) written as ``\\uXXXX`` escapes, so that no value can close the script (``</script>``)
    or open a comment; ``JSON.parse`` reads it back unchanged.

    >>> script_json({"name": "</script>"})
    '{"name": "\\\\u003c/script\\\\u003e"}'
    """
    text = json.dumps(obj, ensure_ascii=False)
    for ch, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                     ("\u2029", "\\u2029")):
        text = text.replace(ch, code)
    return text
