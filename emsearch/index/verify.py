"""Is a built index whole? Every file it holds against the SHA-256 the manifest recorded when it was written: both
manifest copies (each carries its own checksum), the embedding shards, the sentence store's data file and every
FAISS file. It reads every byte of every file once (SHA-256 runs at about 1 GB/s on one core).

`emsearch verify` prints the answer; `build-index` asks it before saying "up to date", and `Index.open` before
serving anything, so damage is never read as data. Hashing a 10M-sentence index takes seconds, and a billion
sentences ten minutes, on every open of every Ray actor; so `Index.open` trusts a stamp (`verified.json`) left by
the last check that hashed a file, for as long as the file's size, inode, mtime and ctime are those it recorded
(any write or copy changes its ctime). Files changed in the two seconds before a check are not stamped, since a
write within the same clock tick could leave the times unchanged. `emsearch verify` always hashes everything.

A rerun of the build repairs what it finds: a damaged store is re-filled from the input (the shards whose
checksum holds are not re-encoded), a damaged shard re-encoded, a damaged FAISS file rebuilt from the shards, a
damaged manifest copy rewritten.
"""

from __future__ import annotations

import json
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from emsearch.atomic import atomic_path, file_sha256
from emsearch.errors import EmsearchError
from emsearch.index.build_config import BuildConfig
from emsearch.index.choice import format_bytes
from emsearch.index.manifest import COPY, MANIFEST, Manifest, ManifestError, load_index, read, resolve_index
from emsearch.index.store import DATA_FILE

STORE_FILE = f"store/{DATA_FILE}"
STAMP = "verified.json"  # files hashed whole by the last check, with the stat they had: see the module docstring
RACY_SECONDS = 2.0  # files changed this recently are not stamped


@dataclass
class Verdict:
    """What was checked and what is wrong (each problem one line naming the file); whole when no problem."""

    checked: dict[str, int] = field(default_factory=lambda: {"files": 0, "bytes": 0})
    problems: list[str] = field(default_factory=list)
    store_damaged: bool = False

    @property
    def whole(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class VerifyReport:
    """The verdict on one index, with the build command that repairs it (None when whole): `emsearch verify`."""

    path: Path
    verdict: Verdict
    repair: str | None

    def to_json(self) -> dict:
        return {"index": str(self.path), "whole": self.verdict.whole, "checked": self.verdict.checked,
                "problems": self.verdict.problems, "repair": self.repair}


def check_index(name_or_path: str | Path) -> VerifyReport:
    """Verify the complete index at a path, or of that name under indexes/, every file included."""
    path = resolve_index(name_or_path)
    manifest = load_index(path, complete=True)
    verdict = verify_index(path, manifest)
    return VerifyReport(path, verdict, None if verdict.whole else repair_command(path, manifest))


def recorded_files(manifest: Manifest) -> list[tuple[str, str | None]]:
    """(file relative to the index, its recorded SHA-256 or None when none was recorded) of every data file."""
    files = [(s.file, s.sha256) for s in manifest.shards]
    files.append((STORE_FILE, manifest.store.sha256 if manifest.store else None))
    info = manifest.index
    if info is not None and info.params.kind != "flat":
        if info.trained is not None:
            files.append((info.trained.file, info.trained.sha256))
        if info.merged is not None:  # the groups were folded into it and deleted
            files += [(info.merged.file, info.merged.sha256), (info.merged.data, info.merged.data_sha256)]
        else:
            files += [(g.file, g.sha256) for g in info.groups]
    return files


def verify_index(out: Path, manifest: Manifest, *, copies: bool = True, trust_stamp: bool = False) -> Verdict:
    """Check every file of a complete build in `out` against `manifest` (read by `manifest.load`: from a whole
    copy); without `copies`, only the data files (a damaged manifest copy changes no answer). With `trust_stamp`,
    a file the stamp vouches for is not hashed again; every file hashed whole is stamped."""
    verdict = Verdict()
    if copies:
        verdict.problems += _manifest_problems(out, verdict)
    stamped = _read_stamp(out) if trust_stamp else {}
    stamp, hashed = {}, False
    for file, sha256 in recorded_files(manifest):
        path = out / file
        if sha256 is None:
            problem = f"{path}: no checksum recorded (an index built by an older emsearch)"
        elif not path.is_file():
            problem = f"{path}: missing"
        elif stamped.get(file) == (entry := _stamp_entry(path, sha256)):
            stamp[file] = entry
            problem = None
        elif file_sha256(path) != sha256:
            problem = f"{path}: damaged (its SHA-256 is not the one recorded when it was written)"
        else:
            stamp[file], hashed, problem = entry, True, None
        if problem is None:
            verdict.checked["files"] += 1
            verdict.checked["bytes"] += path.stat().st_size
        else:
            verdict.problems.append(problem)
            verdict.store_damaged |= file == STORE_FILE
    if hashed:
        _write_stamp(out, stamp)
    return verdict


def _stamp_entry(path: Path, sha256: str) -> dict:
    st = path.stat()
    return {"sha256": sha256, "size": st.st_size, "inode": st.st_ino, "mtime_ns": st.st_mtime_ns,
            "ctime_ns": st.st_ctime_ns}


def _read_stamp(out: Path) -> dict[str, dict]:
    try:
        files = json.loads((out / STAMP).read_text(encoding="utf-8"))["files"]
        return files if isinstance(files, dict) else {}
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # no stamp, or an unreadable one: everything is hashed


def _write_stamp(out: Path, stamp: dict[str, dict]) -> None:
    """Best effort (a read-only index is simply hashed on every open); racily fresh files left out."""
    settled = time.time_ns() - int(RACY_SECONDS * 1e9)
    files = {f: e for f, e in stamp.items() if max(e["mtime_ns"], e["ctime_ns"]) < settled}
    try:
        with atomic_path(out / STAMP, suffix=f".{os.getpid()}.tmp") as tmp:  # actors may write it at once
            tmp.write_text(json.dumps({"files": files}, indent=1) + "\n", encoding="utf-8")
    except (OSError, EmsearchError):
        pass


def _manifest_problems(out: Path, verdict: Verdict) -> list[str]:
    """Each copy must be whole, and the two the same (the build writes them together)."""
    texts = {}
    problems = []
    for name in (MANIFEST, COPY):
        try:
            read(out / name)
            texts[name] = (out / name).read_bytes()
        except ManifestError as e:
            problems.append(str(e).split(";")[0])
    if len(texts) == 2 and texts[MANIFEST] != texts[COPY]:
        problems.append(f"{out / COPY}: differs from {MANIFEST}")
    elif len(texts) == 2 and b'"checksum"' not in texts[MANIFEST]:
        problems.append(f"{out / MANIFEST}: no checksum recorded (an index built by an older emsearch)")
    else:
        for text in texts.values():
            verdict.checked["files"] += 1
            verdict.checked["bytes"] += len(text)
    return problems


def repair_command(out: Path, manifest: Manifest) -> str:
    """The build command that repairs `out`: its input and every option that decided it (a rerun with other
    options would be refused, or rebuild more than the damage)."""
    build, requested = manifest.build, manifest.index.requested if manifest.index else None
    args = ["emsearch", "build-index", manifest.input.path, "--out", str(out)]
    if manifest.model.path:
        args += ["--model", manifest.model.path]
    for flag, value, default in (("--text-column", build.text_column, BuildConfig.text_column),
                                 ("--lang-column", build.lang_column, BuildConfig.lang_column),
                                 ("--id-column", build.id_column, None), ("--lang", build.lang, None),
                                 ("--shard-size", build.shard_size, BuildConfig.shard_size)):
        if value != default:
            args += [flag, str(value)]
    if requested is not None:
        if requested.factory:
            args += ["--index-factory", requested.factory]
        if requested.max_memory != BuildConfig.max_index_memory:
            args += ["--max-index-memory", format_bytes(requested.max_memory)]
        args += ["--merge"] if requested.merge else []
        if requested.centring != BuildConfig.centre:
            args += ["--centre", requested.centring]
    return shlex.join(args)
