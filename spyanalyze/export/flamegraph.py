"""Flame graphs: a self-contained HTML page (search, zoom, a graph per thread) and a static SVG,
as flamegraph.pl draws them, from one tree of stacks shared by both.

Each distinct stack's weight is added along its path of frames from the root, so a node's value
is the weight of the samples whose stack runs through it.  Frames are labelled as everywhere in
the analyser (``spyanalyze.frames.labels``).  Names come from the recording, which is untrusted:
the SVG escapes every name and drops control characters; the HTML carries the tree as JSON in a
``<script type="application/json">`` block with ``<``, ``>`` and ``&`` escaped, and its script
puts names in the page as text, never as markup.  Nothing is loaded from the network.
"""

import json
import zlib
from typing import TYPE_CHECKING, Any, Dict, List, Optional, TextIO, Tuple
from xml.sax.saxutils import escape

import numpy as np

from spyanalyze.frames import GC_FRAME, NO_PYTHON_FRAMES
from spyanalyze.tables import check_weight, thread_keys, thread_label
from spyanalyze.version import exporter

if TYPE_CHECKING:
    from spyanalyze.recording import Recording

#: What a value counts, per weight.
UNITS = {"samples": "samples", "wall": "ms", "cpu": "ms"}
#: Time weights are nanoseconds in the tables, milliseconds in the pictures.
_TO_UNIT = {"samples": 1.0, "wall": 1e-6, "cpu": 1e-6}

#: SVG geometry (pixels), as flamegraph.pl draws it.
SVG_WIDTH, FRAME_HEIGHT, PAD, FONT_SIZE, CHAR_WIDTH = 1200, 16, 10, 12, 7.0
#: Frames narrower than this (pixels) are left out of the SVG.
MIN_WIDTH = 0.3


# ------------------------------------------------------------------------------------------
# The tree


def _frame_class(kind: str, qualname: str) -> str:
    """The colour class of a frame: its code's kind, or what a pseudo-frame stands for."""
    if qualname == GC_FRAME:
        return "gc"
    if qualname == NO_PYTHON_FRAMES:
        return "none"
    return kind


def tree(recording: "Recording", weight: str = "samples",
         by_thread: bool = False) -> List[Dict[str, Any]]:
    """The flame graph trees: ``[{"name": "all threads", "root": node}]``, then one per thread
    with ``by_thread``.  A node is ``{"n": label, "k": class, "v": value, "c": [children]}``,
    its value in ``UNITS[weight]``, children heaviest first."""
    check_weight(weight)
    samples = recording.samples
    frames = recording.frames
    labels = frames["label"].tolist()
    classes = [_frame_class(str(k), q) for k, q in zip(frames["kind"], frames["qualname"])]
    tuples = recording.stack_table.tuples
    w = samples["ticks" if weight == "samples" else weight].to_numpy(dtype=np.float64) * _TO_UNIT[weight]
    stacks = samples["stack"].to_numpy()
    groups: List[Tuple[str, np.ndarray]] = [("all threads", np.ones(len(samples), dtype=bool))]
    if by_thread:
        key = thread_keys(samples)
        several = len(np.unique(samples["pid"].to_numpy())) > 1
        for k in np.unique(key).tolist():
            mask = key == k
            first = int(np.flatnonzero(mask)[0])
            name = thread_label(samples["thread"].iloc[first], int(k) & 0xFFFFFFFF)
            groups.append(("pid %d: %s" % (k >> 32, name) if several else name, mask))
    result = []
    for name, mask in groups:
        per_stack = np.bincount(stacks[mask], weights=w[mask], minlength=len(tuples))
        root: Dict[str, Any] = {"n": name, "k": "root", "v": 0.0, "c": {}}
        for sid in np.flatnonzero(per_stack > 0).tolist():
            value = float(per_stack[sid])
            root["v"] += value
            node = root
            for fid in tuples[sid]:
                child = node["c"].get(fid)
                if child is None:
                    child = node["c"][fid] = {"n": labels[fid], "k": classes[fid], "v": 0.0, "c": {}}
                child["v"] += value
                node = child
        result.append({"name": name, "root": _finished(root)})
    return result


def _finished(node: Dict[str, Any]) -> Dict[str, Any]:
    """Children as a list, heaviest first; values rounded for the page; the fill (``"f"``)
    the SVG and the page both use."""
    children = sorted(node["c"].values(), key=lambda c: -c["v"])
    return {"n": node["n"], "k": node["k"], "v": round(node["v"], 3),
            "f": colour(node["k"], node["n"]), "c": [_finished(child) for child in children]}


def depth(node: Dict[str, Any]) -> int:
    return 1 + max((depth(child) for child in node["c"]), default=0)


# ------------------------------------------------------------------------------------------
# SVG


_CONTROL = {c: "?" for c in list(range(0x20)) + [0x7F]}


def _xml(text: str) -> str:
    """Text safe in XML content and attributes: escaped, control characters (newlines too)
    and lone surrogates replaced."""
    text = str(text).translate(_CONTROL).encode("utf-8", "replace").decode("utf-8")
    return escape(text, {'"': "&quot;"})


def colour(node_class: str, name: str) -> str:
    """A frame's fill: warm hues for the program's code, blue for the standard library, green
    for installed packages, orange for the kernel, as flamegraph.pl users know them; the hue
    within its range from the name, so a function keeps its colour across graphs."""
    h = zlib.crc32(name.encode("utf-8", "replace")) / 0xFFFFFFFF
    if node_class == "stdlib":
        return "rgb(%d,%d,230)" % (80 + 60 * h, 140 + 60 * h)
    if node_class == "site-packages":
        return "rgb(%d,200,%d)" % (80 + 60 * h, 80 + 40 * h)
    if node_class == "kernel":
        return "rgb(230,%d,40)" % (120 + 50 * h)
    if node_class == "gc":
        return "rgb(170,120,220)"
    if node_class in ("none", "root", "other", "native"):
        return "rgb(%d,%d,%d)" % ((190 + 30 * h,) * 3)
    return "rgb(%d,%d,60)" % (205 + 50 * h, 80 + 120 * h)


def write_svg(recording: "Recording", out: TextIO, weight: str = "samples",
              title: Optional[str] = None) -> int:
    """Write the flame graph of all threads as SVG; returns the number of frames drawn."""
    root = tree(recording, weight)[0]["root"]
    unit = UNITS[weight]
    total = root["v"] or 1.0
    levels = depth(root)
    height = levels * FRAME_HEIGHT + 3 * PAD + FONT_SIZE
    scale = (SVG_WIDTH - 2 * PAD) / total
    out.write('<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n')
    out.write('<svg version="1.1" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
              'viewBox="0 0 %d %d" font-family="monospace" font-size="%d">\n'
              % (SVG_WIDTH, height, SVG_WIDTH, height, FONT_SIZE))
    out.write('<!-- %s -->\n' % _xml(exporter()).replace("--", "- -"))
    out.write('<rect x="0" y="0" width="100%%" height="100%%" fill="rgb(250,250,245)"/>\n')
    out.write('<text x="%d" y="%d" font-size="%d">%s</text>\n'
              % (PAD, PAD + FONT_SIZE, FONT_SIZE + 2, _xml(title or "Flame graph")))
    drawn = 0
    # the root at the bottom, as flamegraph.pl draws it
    stack: List[Tuple[Dict[str, Any], float, int]] = [(root, 0.0, 0)]
    while stack:
        node, x, level = stack.pop()
        width = node["v"] * scale
        if width < MIN_WIDTH:
            continue
        y = height - PAD - (level + 1) * FRAME_HEIGHT
        share = 100.0 * node["v"] / total
        tip = "%s (%s %s, %.2f%%)" % (node["n"], _amount(node["v"], unit), unit, share)
        out.write('<g><title>%s</title><rect x="%.2f" y="%d" width="%.2f" height="%d" fill="%s" '
                  'rx="2"/>' % (_xml(tip), PAD + x * scale, y, width, FRAME_HEIGHT - 1, node["f"]))
        chars = int((width - 6) / CHAR_WIDTH)
        if chars >= 3:
            text = node["n"] if len(node["n"]) <= chars else node["n"][:chars - 2] + ".."
            out.write('<text x="%.2f" y="%d">%s</text>' % (PAD + x * scale + 3,
                                                           y + FRAME_HEIGHT - 4, _xml(text)))
        out.write("</g>\n")
        drawn += 1
        offset = x
        for child in node["c"]:
            stack.append((child, offset, level + 1))
            offset += child["v"]
    out.write("</svg>\n")
    return drawn


def _amount(value: float, unit: str) -> str:
    """A node's weight as its tooltip says it: samples whole, as ``top`` counts them (a
    sample in a round that ran late weighs less than one), milliseconds to the microsecond."""
    whole = unit == "samples" or abs(value - round(value)) < 1e-6
    return "%d" % round(value) if whole else "%.3f" % value


# ------------------------------------------------------------------------------------------
# HTML


def _json_in_script(data: Any) -> str:
    """JSON that cannot end its ``<script>`` block or start markup, whatever the names."""
    return (json.dumps(data, ensure_ascii=True, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def page_data(recording: "Recording", weight: str = "samples",
              title: Optional[str] = None) -> Dict[str, Any]:
    """What the HTML page draws: the trees (all threads, then each thread), the unit, a title."""
    return {"title": title or "Flame graph", "unit": UNITS[weight], "exporter": exporter(),
            "graphs": tree(recording, weight, by_thread=True)}


def write_html(recording: "Recording", out: TextIO, weight: str = "samples",
               title: Optional[str] = None) -> int:
    """Write the self-contained HTML flame graph; returns the number of graphs in it."""
    data = page_data(recording, weight, title)
    out.write(_PAGE.replace("@TITLE@", escape(data["title"])).replace("@DATA@", _json_in_script(data)))
    return len(data["graphs"])


def _merged(nodes: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One tree of several recordings' trees: values added along equal paths of labels."""
    children: Dict[str, List[Dict[str, Any]]] = {}
    for node in nodes:
        for child in node["c"]:
            children.setdefault(child["n"], []).append(child)
    merged = [_merged(group) for group in children.values()]
    return {"n": nodes[0]["n"], "k": nodes[0]["k"], "v": sum(node["v"] for node in nodes),
            "f": nodes[0]["f"], "c": sorted(merged, key=lambda c: -c["v"])}


def diff_data(before: List["Recording"], after: List["Recording"], weight: str = "samples",
              title: Optional[str] = None) -> Dict[str, Any]:
    """The page data of the ``after`` recordings' graph with each node's share in the
    ``before`` ones beside its own (``"b"``, on the same path of labels): the page colours
    growth red and shrinkage blue."""
    old = _merged([tree(rec, weight)[0]["root"] for rec in before])
    new = _merged([tree(rec, weight)[0]["root"] for rec in after])
    old_total, new_total = old["v"] or 1.0, new["v"] or 1.0

    def shares(node: Dict[str, Any], path: Tuple[str, ...], into: Dict[Tuple[str, ...], float]) -> None:
        into[path] = into.get(path, 0.0) + node["v"] / old_total
        for child in node["c"]:
            shares(child, path + (child["n"],), into)
    before_shares: Dict[Tuple[str, ...], float] = {}
    shares(old, (), before_shares)

    def mark(node: Dict[str, Any], path: Tuple[str, ...]) -> None:
        node["b"] = round(before_shares.get(path, 0.0), 6)
        node["s"] = round(node["v"] / new_total, 6)
        for child in node["c"]:
            mark(child, path + (child["n"],))
    mark(new, ())
    new["n"] = "all threads"
    return {"title": title or "Differential flame graph", "unit": UNITS[weight],
            "exporter": exporter(), "diff": True, "graphs": [{"name": "after vs before", "root": new}]}


def write_diff_html(before: List["Recording"], after: List["Recording"], out: TextIO,
                    weight: str = "samples", title: Optional[str] = None) -> int:
    """Write the ``after`` recordings' flame graph coloured by the change of each frame's
    share since the ``before`` ones; returns the number of graphs (1)."""
    data = diff_data(before, after, weight, title)
    out.write(_PAGE.replace("@TITLE@", escape(data["title"])).replace("@DATA@", _json_in_script(data)))
    return 1


#: The page: a toolbar (graph, search, reset), the graph as positioned boxes (root at the top,
#: an icicle), a line about the frame under the pointer.  The script reads the JSON block,
#: lays out the zoomed node's subtree to the page's width, and skips boxes under half a pixel.
_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>@TITLE@</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
html { scrollbar-gutter: stable; }
body { font: 12px monospace; margin: 8px; background: #fafaf5; color: #222; }
#bar { display: flex; gap: 8px; align-items: center; margin-bottom: 6px; flex-wrap: wrap; }
#graph { position: relative; width: 100%; overflow: hidden; }
.f { position: absolute; height: 15px; line-height: 15px; overflow: hidden; white-space: nowrap;
     border-radius: 2px; padding: 0 3px; box-sizing: border-box; cursor: pointer; }
.f.hit { background: rgb(230, 0, 230) !important; color: #fff; }
#info { margin-top: 6px; min-height: 1.2em; }
</style></head>
<body>
<div id="bar"><strong id="title"></strong>
<select id="which" aria-label="graph"></select>
<input id="search" placeholder="search (regex)" aria-label="search">
<button id="reset">reset zoom</button><span id="matched"></span></div>
<div id="graph"></div><div id="info"></div>
<script type="application/json" id="data">@DATA@</script>
<script>
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("data").textContent);
  var graph = document.getElementById("graph"), info = document.getElementById("info");
  var which = document.getElementById("which"), search = document.getElementById("search");
  var matched = document.getElementById("matched");
  var current = 0, zoom = null, pattern = null, H = 16;
  document.getElementById("title").textContent = data.title;
  data.graphs.forEach(function (g, i) {
    var o = document.createElement("option"); o.value = i; o.textContent = g.name; which.appendChild(o);
  });
  function fill(n) {
    if (data.diff) {
      var d = n.s - n.b, m = Math.min(1, Math.abs(d) / 0.05), c = Math.round(255 * (1 - m));
      return d > 0 ? "rgb(255," + c + "," + c + ")" : "rgb(" + c + "," + c + ",255)";
    }
    return n.f;
  }
  function amount(v) {
    var whole = data.unit === "samples" || Math.abs(v - Math.round(v)) < 1e-6;
    return whole ? String(Math.round(v)) : v.toFixed(3);
  }
  function describe(n, total) {
    var text = n.n + " (" + amount(n.v) + " " + data.unit + ", " + (100 * n.v / total).toFixed(2) + "%)";
    if (data.diff) text += "; before " + (100 * n.b).toFixed(2) + "%, after " + (100 * n.s).toFixed(2) + "%";
    return text;
  }
  function depth(n) { var d = 0; n.c.forEach(function (c) { d = Math.max(d, depth(c)); }); return d + 1; }
  function hits(n, under) {
    var hit = pattern !== null && pattern.test(n.n);
    var sum = hit && !under ? n.v : 0;
    n.c.forEach(function (c) { sum += hits(c, under || hit); });
    return sum;
  }
  function draw() {
    var root = data.graphs[current].root, top = zoom || root, total = root.v || 1;
    graph.textContent = "";
    // the height first: a graph taller than the window brings a scrollbar, which narrows it
    graph.style.height = (depth(top) * H) + "px";
    var width = graph.clientWidth || 1000, scale = width / (top.v || 1);
    var todo = [[top, 0, 0]];
    while (todo.length) {
      var item = todo.pop(), n = item[0], x = item[1], level = item[2], w = n.v * scale;
      if (w < 0.5) continue;
      var box = document.createElement("div");
      box.className = "f" + (pattern !== null && pattern.test(n.n) ? " hit" : "");
      box.style.left = x + "px"; box.style.top = (level * H) + "px"; box.style.width = w + "px";
      box.style.background = fill(n);
      box.textContent = w > 24 ? n.n : "";
      box.title = describe(n, total);
      (function (node) {
        box.addEventListener("click", function () { zoom = node === root ? null : node; draw(); });
        box.addEventListener("mouseover", function () { info.textContent = describe(node, total); });
      })(n);
      graph.appendChild(box);
      var offset = x;
      n.c.forEach(function (c) { todo.push([c, offset, level + 1]); offset += c.v * scale; });
    }
    matched.textContent = pattern === null ? "" :
      "Matched: " + (100 * hits(root, false) / total).toFixed(2) + "%";
  }
  function setSearch(text) {
    try { pattern = text ? new RegExp(text, "i") : null; } catch (e) { pattern = null; }
    draw();
  }
  which.addEventListener("change", function () { current = +which.value; zoom = null; draw(); });
  search.addEventListener("input", function () { setSearch(search.value); });
  document.getElementById("reset").addEventListener("click", function () { zoom = null; draw(); });
  window.addEventListener("resize", draw);
  var asked = /[#&]search=([^&]*)/.exec(location.hash);
  if (asked) { search.value = decodeURIComponent(asked[1]); }
  setSearch(search.value);
})();
</script>
</body></html>
"""
