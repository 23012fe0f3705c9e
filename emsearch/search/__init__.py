"""The search side: `query` (validated search requests, shared by the CLI and the server), `mining` (margin
scoring as plain array code on (D, I)), `mine` (mining over one or two indexes, resumable, to parquet or TSV)."""
