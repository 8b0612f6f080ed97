"""Find the line of every key in a TOML text, so that config errors can say where to look.

`tomllib` parses values but forgets positions. This scanner walks the text once and records,
for each key path (`("devices", 0, "poll_period_s")`), the line where it is written: table
headers, arrays of tables, dotted keys, inline tables and arrays of inline tables included.
It only has to be right for valid TOML: invalid TOML is rejected by tomllib first.
"""

from __future__ import annotations

import re

Key = str | int
Path = tuple[Key, ...]

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _parse_key(text: str, i: int) -> tuple[list[str], int]:
    """Parse a (dotted, possibly quoted) key starting at text[i]; return parts and end index."""
    parts: list[str] = []
    n = len(text)
    while True:
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] in "\"'":
            quote = text[i]
            j = i + 1
            buf = []
            while j < n and text[j] != quote:
                if quote == '"' and text[j] == "\\" and j + 1 < n:
                    buf.append(text[j + 1])
                    j += 2
                    continue
                buf.append(text[j])
                j += 1
            parts.append("".join(buf))
            i = j + 1
        else:
            m = _BARE.match(text, i)
            if not m:
                return parts, i
            parts.append(m.group(0))
            i = m.end()
        while i < n and text[i] in " \t":
            i += 1
        if i < n and text[i] == ".":
            i += 1
            continue
        return parts, i


class _Scanner:
    def __init__(self, text: str):
        self.text = text
        self.i = 0
        self.line = 1
        self.lines: dict[Path, int] = {}
        self.array_counts: dict[Path, int] = {}

    def record(self, path: Path, line: int) -> None:
        self.lines.setdefault(path, line)

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def advance(self, k: int = 1) -> None:
        for _ in range(k):
            if self.i < len(self.text) and self.text[self.i] == "\n":
                self.line += 1
            self.i += 1

    def skip_space(self, newlines: bool) -> None:
        while self.i < len(self.text):
            c = self.text[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.advance()
            elif c == "#":
                while self.i < len(self.text) and self.text[self.i] != "\n":
                    self.i += 1
            else:
                return

    def skip_string(self) -> None:
        text = self.text
        quote = text[self.i]
        triple = text.startswith(quote * 3, self.i)
        delim = quote * 3 if triple else quote
        self.advance(len(delim))
        while self.i < len(text):
            if quote == '"' and text[self.i] == "\\":
                self.advance(2)
            elif text.startswith(delim, self.i):
                self.advance(len(delim))
                while triple and self.peek() == quote:  # up to two extra quotes end a """ string
                    self.advance()
                return
            else:
                self.advance()

    def value(self, path: Path) -> None:
        """Skip one value, recording keys inside inline tables and elements of arrays."""
        c = self.peek()
        if c in "\"'":
            self.skip_string()
        elif c == "{":
            self.inline_table(path)
        elif c == "[":
            self.array(path)
        else:
            while self.i < len(self.text) and self.text[self.i] not in ",]}\n#":
                self.advance()

    def inline_table(self, path: Path) -> None:
        self.advance()  # {
        while True:
            self.skip_space(newlines=True)
            if self.peek() in ("}", ""):
                self.advance()
                return
            if self.peek() == ",":
                self.advance()
                continue
            line = self.line
            parts, end = _parse_key(self.text, self.i)
            self.advance(end - self.i)
            key_path = path + tuple(parts)
            self.record(key_path, line)
            self.skip_space(newlines=False)
            if self.peek() == "=":
                self.advance()
            self.skip_space(newlines=False)
            self.value(key_path)

    def array(self, path: Path) -> None:
        self.advance()  # [
        index = 0
        while True:
            self.skip_space(newlines=True)
            c = self.peek()
            if c in ("]", ""):
                self.advance()
                return
            if c == ",":
                self.advance()
                index += 1
                continue
            self.record(path + (index,), self.line)
            self.value(path + (index,))

    def header(self) -> Path:
        text = self.text
        is_array = text.startswith("[[", self.i)
        self.advance(2 if is_array else 1)
        line = self.line
        parts, end = _parse_key(text, self.i)
        self.advance(end - self.i)
        self.advance(2 if is_array else 1)
        path: Path = ()
        for k, part in enumerate(parts):
            path = path + (part,)
            last = k == len(parts) - 1
            if last and is_array:
                count = self.array_counts.get(path, 0)
                self.array_counts[path] = count + 1
                self.record(path, line)
                path = path + (count,)
            elif path in self.array_counts:
                path = path + (self.array_counts[path] - 1,)
        self.record(path, line)
        return path

    def run(self) -> dict[Path, int]:
        table: Path = ()
        while True:
            self.skip_space(newlines=True)
            c = self.peek()
            if not c:
                return self.lines
            if c == "[":
                table = self.header()
                continue
            line = self.line
            parts, end = _parse_key(self.text, self.i)
            if not parts:  # not a key: skip the rest of the line
                while self.peek() not in ("\n", ""):
                    self.advance()
                continue
            self.advance(end - self.i)
            path = table + tuple(parts)
            for k in range(1, len(parts) + 1):
                self.record(table + tuple(parts[:k]), line)
            self.skip_space(newlines=False)
            if self.peek() == "=":
                self.advance()
            self.skip_space(newlines=False)
            self.value(path)


def key_lines(text: str) -> dict[Path, int]:
    """Map every key path of a TOML document to the 1-based line where it is written."""
    return _Scanner(text).run()


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """Line of `path`, or of its nearest written ancestor."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return None


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"
