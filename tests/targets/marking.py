"""A tree visitor made of recursive generators whose leaves mark their ancestors changed by a
recursive plain method, as black's visitors and blib2to3's ``Node.changed`` do.  Plain Python,
runs on 3.8+.

Usage: ``python marking.py [DURATION=30]``

``changed`` is called thousands of times a millisecond and returns at once at an ancestor
already marked, so its frames are freed and made again between any two reads of a stack: on
3.8-3.10, where each frame is a heap object, a walk can follow a link made stale meanwhile into
a freed frame of ``changed`` and stop there, a stack that looks whole but has no caller.  Every
stack of the running program is rooted at ``<module>``.
"""

import time

from _truth import duration_arg, ready

DURATION = duration_arg()
DEPTH = 6


class Node:
    __slots__ = ("parent", "children", "was_changed")

    def __init__(self, parent):
        self.parent = parent
        self.children = []
        self.was_changed = False

    def changed(self):
        if self.was_changed:
            return
        if self.parent:
            self.parent.changed()
        self.was_changed = True


def build(parent, depth):
    node = Node(parent)
    if depth:
        node.children = [build(node, depth - 1) for _ in range(3)]
    return node


def visit(node):
    if not node.children:
        node.changed()
        yield node
    for child in node.children:
        yield from visit(child)


def unmark(node):
    node.was_changed = False
    for child in node.children:
        unmark(child)


def main():
    root = build(None, DEPTH)
    ready()
    end = time.perf_counter() + DURATION
    while time.perf_counter() < end:
        unmark(root)
        for _ in visit(root):
            pass


if __name__ == "__main__":
    main()
