"""`emsearch query`: multilingual search from the command line, as a table or as JSON lines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from emsearch.errors import EmsearchError
from emsearch.cli.app import app, console
from emsearch.search.query import SearchRequest, hit_json, read_queries, run, split_langs

BATCH = 256  # queries per search call when reading --file
out = Console()


@app.command("query")
def query_command(
    text: Optional[str] = typer.Argument(None, help="The query, in any language (or use --file)."),
    lang: Optional[str] = typer.Option(None, help="Language of the queries: an index built with --centre language centres them on its mean (else the corpus mean)."),
    index: Optional[Path] = typer.Option(None, help="Index directory; default: the only index under indexes/."),
    k: int = typer.Option(SearchRequest.k, "--k", "-k", help="Results per query (1 to 1000)."),
    target_lang: Optional[str] = typer.Option(None, help="Only results in these languages, comma-separated (en,de)."),
    file: Optional[Path] = typer.Option(None, help="Batch search: one query per line of this UTF-8 file."),
    nprobe: Optional[int] = typer.Option(None, help="IVF lists to visit; default: the index's calibrated value."),
    model: Optional[Path] = typer.Option(None, help="Model bundle; default: the model the index was built with."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per hit instead of a table."),
    strict: bool = typer.Option(False, "--strict", help="With --file: a blank line is an error instead of skipped."),
) -> None:
    """Search an index with queries in any language; hits from all shards, merged, best first."""
    from emsearch.index.reader import Index  # torch: imported when the command runs, not for --help

    if (text is None) == (file is None):
        raise EmsearchError("give either a query or --file QUERIES.txt (one query per line)")
    if file is not None:
        texts, line_of = read_queries(file, strict=strict,
                                      warn=lambda m: console.print(f"[yellow]warning:[/] {m}", highlight=False))
    else:
        texts, line_of = [text], [0]
    requests = [SearchRequest.checked(texts[i : i + BATCH], k, split_langs(target_lang), nprobe, lang=lang)
                for i in range(0, len(texts), BATCH)]
    with Index.open(index, model=model) as idx:
        results = []
        for request in requests:
            results += run(idx, request)
    for i, query, hits in zip(line_of, texts, results):
        if as_json:
            for hit in hits:
                print(json.dumps(hit_json(i, query, hit), ensure_ascii=False))
            continue
        table = Table(title=query if file is None else f"{i + 1}. {query}", title_justify="left")
        for name, justify in (("rank", "right"), ("score", "right"), ("lang", "left"), ("id", "left"),
                              ("text", "left"), ("meta", "left")):
            table.add_column(name, justify=justify, overflow="fold")
        for hit in hits:
            meta = ", ".join(f"{key}={value}" for key, value in hit.meta.items())
            table.add_row(str(hit.rank), f"{hit.score:.4f}", hit.lang, hit.id, hit.text, meta)
        out.print(table)
