"""The bad-input corpus: strings, JSON request fields and bodies, HTTP requests and corpus files, each with the
answer the README documents (None: answered normally; a string: the error says it)."""

from __future__ import annotations

LONG = "ka001 " * 1000  # 6,000 characters: over a query's 5,000

QUERIES = {  # query text → None (searched) or the error
    "lone surrogate": ("Guten \ud800 Morgen", "not valid Unicode (a lone surrogate, U+D800, at character 7)"),
    "undecodable argv byte": ("Guten \udcff Morgen", "not valid Unicode (a lone surrogate, U+DCFF"),
    "NUL": ("ka001\x00ka002", None),
    "BOM": ("\ufeffka001 ka002", None),
    "RTL marks": ("\u200fka001\u200f \u202bka002\u202c", None),
    "mixed newlines": ("ka001\r\nka002\rka003\nka004", None),
    "combining and emoji": ("ka001 e\u0301 \U0001F600", None),
    "empty": ("", "empty"),
    "blank": (" \t\n", "empty"),
    "too long": (LONG, "has 6000 characters; shorten it to at most 5000"),
}

HUGE = 10**4000  # parses; its repr would be a ValueError
FIELDS = {  # JSON body of POST /search → the 400's message
    "no texts": ({"k": 3}, 'missing "texts"'),
    "texts null": ({"texts": None}, "texts must be a list"),
    "texts string": ({"texts": "hello"}, "texts must be a list"),
    "texts number": ({"texts": 5}, "texts must be a list"),
    "texts object": ({"texts": {"a": "b"}}, "texts must be a list"),
    "texts empty": ({"texts": []}, "no query"),
    "texts of null": ({"texts": [None]}, "is not a string"),
    "texts of number": ({"texts": [1]}, "is not a string"),
    "texts of list": ({"texts": [["a"]]}, "is not a string"),
    "texts of object": ({"texts": [{}]}, "is not a string"),
    "texts of bool": ({"texts": [True]}, "is not a string"),
    "texts with a lone surrogate": ({"texts": ["ok", "\ud800"]}, "query 2 is not valid Unicode"),
    "k string": ({"texts": ["a"], "k": "5"}, "k must be a whole number"),
    "k float": ({"texts": ["a"], "k": 5.5}, "k must be a whole number"),
    "k bool": ({"texts": ["a"], "k": True}, "k must be a whole number"),
    "k null": ({"texts": ["a"], "k": None}, "k must be a whole number"),
    "k list": ({"texts": ["a"], "k": [5]}, "k must be a whole number"),
    "k zero": ({"texts": ["a"], "k": 0}, "k must be a whole number"),
    "k negative": ({"texts": ["a"], "k": -3}, "k must be a whole number"),
    "k 4,000 digits": ({"texts": ["a"], "k": HUGE}, "got a number of about 4000 digits"),
    "langs string": ({"texts": ["a"], "langs": "en"}, "langs must be a list"),
    "langs number": ({"texts": ["a"], "langs": 1}, "langs must be a list"),
    "langs object": ({"texts": ["a"], "langs": {"en": 1}}, "langs must be a list"),
    "langs of number": ({"texts": ["a"], "langs": [1]}, "langs must be a list"),
    "langs unknown": ({"texts": ["a"], "langs": ["xx9"]}, "unknown language"),
    "langs lone surrogate": ({"texts": ["a"], "langs": ["\ud800"]}, "is not valid Unicode"),
    "nprobe string": ({"texts": ["a"], "nprobe": "1"}, "nprobe must be a positive whole number"),
    "nprobe zero": ({"texts": ["a"], "nprobe": 0}, "nprobe must be a positive whole number"),
    "nprobe float": ({"texts": ["a"], "nprobe": 1.5}, "nprobe must be a positive whole number"),
    "nprobe bool": ({"texts": ["a"], "nprobe": True}, "nprobe must be a positive whole number"),
    "nprobe huge": ({"texts": ["a"], "nprobe": HUGE}, None),  # more lists than there are: all of them
    "unknown field": ({"texts": ["a"], "kk": 3}, "unknown field(s) kk"),
    "unknown field lone surrogate": ({"texts": ["a"], "\ud800": 3}, "unknown field(s)"),
}

BODIES = {  # raw body of POST /search → the 400's message
    "nested arrays": (b"[" * 50_000, "nested too deeply"),
    "nested objects": (b'{"a":' * 50_000, "nested too deeply"),
    "a 5,000-digit k": (b'{"texts": ["a"], "k": ' + b"9" * 5000 + b"}", "not valid UTF-8 JSON"),
    "not UTF-8": (b'{"texts": ["\xff"]}', "not valid UTF-8 JSON"),
    "BOM": (b'\xef\xbb\xbf{"texts": ["a"]}', "not valid UTF-8 JSON"),
    "empty": (b"", "not valid UTF-8 JSON"),
    "null": (b"null", "must be a JSON object"),
    "array": (b'["a"]', "must be a JSON object"),
    "NaN k": (b'{"texts": ["a"], "k": NaN}', "k must be a whole number"),
    "Infinity k": (b'{"texts": ["a"], "k": 1e400}', "k must be a whole number"),
}

CORPUS_FILES = {  # corpus file name, its bytes, extra build options → None (indexed) or the error
    "lone surrogate in text": ("s.jsonl", b'{"lang": "en", "text": "ka001"}\n{"lang": "en", "text": "a \\ud800 b"}\n',
                               [], "s.jsonl:2: 'text' is not valid Unicode (a lone surrogate, U+D800, at character 3)"),
    "lone surrogate in meta": ("m.jsonl", b'{"lang": "en", "text": "ka001", "note": "\\udfff"}\n', [],
                               "m.jsonl:1: 'note' is not valid Unicode"),
    "surrogate pair": ("p.jsonl", b'{"lang": "en", "text": "ka001 \\ud83d\\ude00"}\n', [], None),
    "NUL": ("n.jsonl", b'{"lang": "en", "text": "ka001\\u0000ka002"}\n', [], None),
    "BOM": ("b.tsv", b"\xef\xbb\xbfid\tlang\ttext\nx1\ten\tka001\n", ["--id-column", "id"], None),
    "RTL marks": ("r.txt", "\u200fka001 ka002\u200f\n".encode(), ["--lang", "he"], None),
    "mixed newlines": ("n.txt", b"ka001\r\nka002\rka003\nka004", ["--lang", "en"], None),
    "invalid UTF-8": ("u.txt", b"ka001\nka\xc3\x28\n", ["--lang", "en"], "u.txt:2: not valid UTF-8"),
    "a 1 MB line": ("l.txt", b"ka001\n" + b"ka003 " * 170_000 + b"\n", ["--lang", "en"], None),
    "a JSON list": ("a.jsonl", b'["ka001"]\n', [], "a.jsonl:1: a JSON list, not an object"),
    "text a number": ("t.jsonl", b'{"lang": "en", "text": 5}\n', [], "'text' is a int, not a string"),
}
