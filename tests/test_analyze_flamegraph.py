"""Flame graphs: the SVG and the self-contained HTML page, from a real recording of
tests/targets/split.py (``heavy`` and ``light`` in a split the target measures), and from a
crafted file whose names try to break out of the markup.

The page is opened in headless Chromium (tests/browser.py): it must draw the hot function, find
it by search (typed, or ``#search=`` in the URL) with the share the views give, zoom on a click,
ask for nothing over the network and put no error on the console.  Without Chromium (Debian's
package ``chromium``, which scripts/test.sh installs as root) those checks skip, saying so.
"""

import io
import json
import re
import urllib.parse
import xml.etree.ElementTree as ElementTree

import pytest
from click.testing import CliRunner

import spyanalyze
from spyanalyze import views
from spyanalyze.cli import main
from spyanalyze.export import flamegraph
import browser
from test_analyze_support import RecordingBuilder, record_split

SVG = "{http://www.w3.org/2000/svg}"
#: Names a hostile recording gives its frames and threads.
HOSTILE = ['</script><script>alert(1)</script>', 'a & b "quoted" <tag>', "line\nbreak\r\x1b[2J",
           "\u2028sep\u2029", "]]><!--"]


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    path, measured = record_split(tmp_path_factory.mktemp("flame"), 0.75, 2.0, 200)
    return path, spyanalyze.load(path)


def heavy_share(rec):
    """``heavy``'s total share of the samples, as ``top`` computes it."""
    return float(views.by_function(rec).set_index("qualname").loc["heavy", "total_share"])


def export(path, fmt, *options):
    result = CliRunner().invoke(main, ["export", str(path), "-f", fmt, "--idle", "include", *options])
    assert result.exit_code == 0, result.output
    return result.output


def test_svg_frames_are_as_wide_as_their_share(split):
    path, rec = split
    root = ElementTree.fromstring(export(path, "svg").encode())
    frames = []
    for group in root.iter(SVG + "g"):
        title = group.find(SVG + "title").text
        rect = group.find(SVG + "rect")
        frames.append((title, float(rect.get("width"))))
    full = max(width for _, width in frames)                # the root spans the graph
    heavy = sum(width for title, width in frames if title.startswith("heavy ("))
    assert heavy / full == pytest.approx(heavy_share(rec), abs=0.005)
    assert any(title.startswith("all threads (") for title, _ in frames)


def test_the_page_carries_every_graph_and_loads_nothing(split):
    path, rec = split
    page = export(path, "html")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    data = json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>',
                                page, re.S).group(1))
    graphs = {graph["name"]: graph["root"] for graph in data["graphs"]}
    assert graphs["all threads"]["v"] == pytest.approx(rec.samples["ticks"].sum(), abs=0.01)
    threads = {name.split(" (tid ")[0] for name in graphs if name != "all threads"}
    assert threads == set(rec.samples["thread"].astype(str))
    for name in graphs:
        assert graphs[name]["v"] <= graphs["all threads"]["v"]


@pytest.fixture(scope="module")
def chromium(tmp_path_factory):
    path = browser.executable()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium): the page cannot be run")
    running = browser.Browser(path, str(tmp_path_factory.mktemp("chromium-profile")))
    yield running
    running.close()


#: What the page drew: each box (text, title, class, colour, position), the graph choices, the
#: "Matched" line and the graph's width in pixels.
DRAWN = """JSON.stringify({
  boxes: Array.from(document.getElementById("graph").children).map((box) => ({
    text: box.textContent, title: box.title, class: box.className,
    fill: box.style.backgroundColor, left: parseFloat(box.style.left),
    top: parseFloat(box.style.top), width: parseFloat(box.style.width)})),
  matched: document.getElementById("matched").textContent,
  options: Array.from(document.getElementById("which").options).map((o) => o.textContent),
  width: document.getElementById("graph").clientWidth})"""


def open_page(chromium, page, tmp_path, search=""):
    html = tmp_path / "page.html"
    html.write_text(page, encoding="utf-8")
    url = html.as_uri() + ("#search=" + urllib.parse.quote(search) if search else "")
    return chromium.open(url)


def drawn(opened):
    return json.loads(opened.evaluate(DRAWN))


def assert_clean(opened):
    """Nothing on the console, and nothing asked for but the page itself."""
    assert opened.errors() == []
    assert set(opened.requests()) <= {opened.evaluate("location.href.split('#')[0]")}


def run_page(chromium, page, tmp_path, search=""):
    opened = open_page(chromium, page, tmp_path, search)
    result = drawn(opened)
    assert_clean(opened)
    return result


def test_the_page_draws_the_graph_and_finds_the_hot_function(split, tmp_path, chromium):
    path, rec = split
    page = run_page(chromium, export(path, "html"), tmp_path, "^heavy ")
    assert page["options"][0] == "all threads"
    texts = [box["text"] for box in page["boxes"]]
    assert any(text.startswith("heavy (") for text in texts)
    hits = [box for box in page["boxes"] if "hit" in box["class"]]
    assert hits and all(box["title"].startswith("heavy (") for box in hits)
    share = float(re.match(r"Matched: ([\d.]+)%", page["matched"]).group(1)) / 100
    assert share == pytest.approx(heavy_share(rec), abs=0.0001)
    roots = [box for box in page["boxes"] if box["top"] == 0]
    assert len(roots) == 1 and roots[0]["width"] == pytest.approx(page["width"])
    # samples are counted whole, as top counts them, though a late round's weigh less
    assert all(re.search(r" \(\d+ samples, [\d.]+%\)$", box["title"]) for box in page["boxes"])


def test_typing_a_search_finds_and_a_click_zooms(split, tmp_path, chromium):
    path, rec = split
    opened = open_page(chromium, export(path, "html"), tmp_path)
    assert drawn(opened)["matched"] == ""
    opened.type("#search", "^light ")
    page = drawn(opened)
    hits = [box for box in page["boxes"] if "hit" in box["class"]]
    assert hits and all(box["title"].startswith("light (") for box in hits)
    light = float(views.by_function(rec).set_index("qualname").loc["light", "total_share"])
    assert float(re.match(r"Matched: ([\d.]+)%", page["matched"]).group(1)) / 100 == \
        pytest.approx(light, abs=0.0001)
    widest = max(hits, key=lambda box: box["width"])
    assert widest["width"] < 0.9 * page["width"]
    graph = opened.evaluate("JSON.stringify(document.getElementById('graph').getBoundingClientRect())")
    graph = json.loads(graph)
    opened.click(graph["left"] + widest["left"] + widest["width"] / 2,
                 graph["top"] + widest["top"] + 8)
    zoomed = drawn(opened)
    top = min(box["top"] for box in zoomed["boxes"])
    assert [box["title"].split(" (")[0] for box in zoomed["boxes"] if box["top"] == top] == ["light"]
    assert [box["width"] for box in zoomed["boxes"] if box["top"] == top] == \
        [pytest.approx(zoomed["width"])]
    opened.evaluate("document.getElementById('reset').click()")
    assert len(drawn(opened)["boxes"]) == len(page["boxes"])
    assert_clean(opened)


def hostile_recording(tmp_path):
    builder = RecordingBuilder()
    for i, name in enumerate(HOSTILE):
        builder.thread(101 + i, name)
        for t in range(5):
            builder.sample(t * 10_000_000, 101 + i, [("/app/%s.py" % name, name, 3),
                                                     ("/app/x.py", "leaf", 4)])
    path = tmp_path / "hostile.spy"
    builder.write(path)
    return path


@pytest.mark.untimed
def test_a_graph_taller_than_the_window_spans_the_width_left_beside_its_scrollbar(tmp_path, chromium):
    # GIVEN a recursion 80 frames deep: drawn, the graph is taller than the 800-pixel window,
    # so the page gets a scrollbar, which takes its width from the graph's
    frames = [("/app/deep.py", "<module>", 1)] + [("/app/deep.py", "walk", 5)] * 79
    builder = RecordingBuilder().thread(7, "MainThread")
    for i in range(50):
        builder.sample(i * 10_000_000, 7, frames[:40 + i % 40] + [("/app/deep.py", "leaf", 9)])
    path = builder.write(tmp_path / "deep.spy")
    page = run_page(chromium, export(path, "html"), tmp_path)
    # THEN the root spans the graph as it is shown: no box runs past its right edge, clipped
    assert len({box["top"] for box in page["boxes"]}) > 800 // 16
    roots = [box for box in page["boxes"] if box["top"] == 0]
    assert len(roots) == 1 and roots[0]["width"] == pytest.approx(page["width"])
    assert max(box["left"] + box["width"] for box in page["boxes"]) <= page["width"] + 0.01


@pytest.mark.untimed
def test_hostile_names_stay_text(tmp_path, chromium):
    path = hostile_recording(tmp_path)
    svg = export(path, "svg")
    root = ElementTree.fromstring(svg.encode())              # well-formed, whatever the names
    titles = [group.find(SVG + "title").text for group in root.iter(SVG + "g")]
    assert not any(c in title for title in titles for c in "\n\r\x1b")
    page = export(path, "html")
    block = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block
    assert page.count("</script>") == 2                      # nothing closed a block early
    data = json.loads(block)
    names = {graph["name"].split(" (tid ")[0] for graph in data["graphs"]}
    assert {"</script><script>alert(1)</script>", 'a & b "quoted" <tag>'} <= names
    boxes = run_page(chromium, page, tmp_path)["boxes"]
    assert any(box["text"].startswith("</script><script>alert(1)</script>") for box in boxes)


@pytest.mark.untimed
def test_the_differential_page_colours_growth_red_and_shrinkage_blue(tmp_path, chromium):
    before, after = tmp_path / "before.spy", tmp_path / "after.spy"
    for path, heavy_ticks in ((before, 2), (after, 8)):
        builder = RecordingBuilder().thread(101, "MainThread")
        for t in range(10):
            leaf = "heavy" if t < heavy_ticks else "light"
            builder.sample(t * 10_000_000, 101, [("/app/main.py", "main", 1), ("/app/main.py", leaf, 2)])
        builder.write(path)
    out = io.StringIO()
    flamegraph.write_diff_html([spyanalyze.load(before)], [spyanalyze.load(after)], out)
    boxes = run_page(chromium, out.getvalue(), tmp_path)["boxes"]
    fills = {box["text"].split(" (")[0]: box["fill"] for box in boxes if box["text"]}
    red = re.match(r"rgb\((\d+), (\d+), (\d+)\)", fills["heavy"]).groups()
    blue = re.match(r"rgb\((\d+), (\d+), (\d+)\)", fills["light"]).groups()
    assert int(red[0]) == 255 and int(red[2]) < 255
    assert int(blue[2]) == 255 and int(blue[0]) < 255
    cli = CliRunner().invoke(main, ["diff", str(before), "--vs", str(after), "--html",
                                    str(tmp_path / "diff.html")])
    assert cli.exit_code == 0, cli.output
    assert "after vs before" in (tmp_path / "diff.html").read_text()
