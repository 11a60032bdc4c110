"""jinja2 rendering a page of nested loops, filters and an include, timing its own parts.

    python jinja_timed.py SECONDS

Each round makes the page's data afresh (a JSON round trip, ``prepare``) and renders it
(``Template.render``: the template's generator ``root`` consumed by ``str.join``, with
markupsafe's escaping at every value).  At exit it prints to stderr, as JSON, the share of
``timed_loop``'s wall time spent in each, measured with ``time.perf_counter`` around the
calls, to compare with what profilers attribute to them.
"""

import json
import sys
import time

import jinja2

PAGE = """<html><body>{% for section in sections %}<h2>{{ section.title|title }}</h2>
<ul>{% for item in section["items"] %}<li class="{{ loop.cycle('a', 'b') }}">{{ item.name }}
 - {{ "%.2f"|format(item.price) }}{% if item.tags %}{% for t in item.tags %}<span>{{ t|upper }}
</span>{% endfor %}{% endif %}</li>{% endfor %}</ul>{% include "footer" %}{% endfor %}
</body></html>"""
FOOTER = "<footer>{{ sections|length }} sections, {{ now }}</footer>"

DATA = [{"title": "section %d" % i,
         "items": [{"name": "item <%d>" % j, "price": j * 1.5,
                    "tags": ["x%d" % k for k in range(j % 4)]} for j in range(40)]}
        for i in range(30)]

spent = {"Template.render": 0.0, "prepare": 0.0}


def prepare():
    start = time.perf_counter()
    data = json.loads(json.dumps(DATA))
    spent["prepare"] += time.perf_counter() - start
    return data


def timed_loop(page, seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        data = prepare()
        start = time.perf_counter()
        page.render(sections=data, now="today")
        spent["Template.render"] += time.perf_counter() - start


def main():
    env = jinja2.Environment(autoescape=True, loader=jinja2.DictLoader({"footer": FOOTER}))
    page = env.from_string(PAGE)
    start = time.perf_counter()
    timed_loop(page, float(sys.argv[1]))
    total = time.perf_counter() - start
    print(json.dumps({key: value / total for key, value in spent.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
