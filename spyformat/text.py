"""Names from a target or a recording made safe to show: they come from the target (and a file
may come from anyone), so they must not drive a terminal or break a line-based format."""


def printable(text: object) -> str:
    """``text`` with control characters escaped: a stray escape sequence could rewrite what a
    terminal shows, a newline or carriage return fake a line."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
