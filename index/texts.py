"""Each catalog row's transcript, caption and on-screen text, and BM25 over them, without LanceDB.

A LanceDB point lookup of ten scene ids costs ~10 ms (query planning and an async round trip), a
full-text query ~5 ms even when nothing matches, and either means importing LanceDB (1.3-2.6 s in
a fresh process). So a snapshot keeps the texts in Arrow IPC segments, one per batch of added
videos (``texts-<first row>.arrow``), memory-mapped: a hit's text is an Arrow take on a mapped
file. Each segment has its BM25 postings (``bm25-<first row>.arrow``: :class:`Postings`) built
from the same texts. Segments are immutable; past ``MAX_SEGMENTS`` they are merged into one.

Terms are made as LanceDB's default FTS makes them: lower case, accents folded, split on
anything that is not a letter or a digit, at most 40 characters, Snowball English (Porter2)
stems (PyStemmer), then stems that are English stop words dropped. A term is looked up by a
stable 64-bit hash of its stem, so opening an index builds no dictionary. Statistics (document
count, average length, document frequency) count the live rows only; deleted rows are never
returned.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from egorag.schema import MOMENTS_TYPE, Moment
from index.files import read_arrays, read_table, write_arrays, write_table

K1, B = 1.2, 0.75
MAX_TOKEN = 40
ARRAYS = ("hashes", "starts", "rows", "tfs", "lengths")
DENSE_FRACTION = 4  # past n_docs / 4 postings in a query, scores accumulate in a dense array
# (below, the terms' sorted row lists are merged: at 1M rows 1.3 ms for 84k postings, against
# 2.8 ms for np.unique and 4.4 ms for a dense bincount; the 200 benchmark queries' p50 5.2 -> 3.0 ms)

# NLTK's English stop words, matched against *stems*, as LanceDB's default FTS matches them
# (measured against lancedb 0.40: it drops "myself" and "doing" (stem "do") but keeps "before"
# and "only", whose stems "befor" and "onli" are not in the list)
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you your yours yourself yourselves he him his himself
    she her hers herself it its itself they them their theirs themselves what which who whom this
    that these those am is are was were be been being have has had having do does did doing a an
    the and but if or because as until while of at by for with about against between into through
    during before after above below to from up down in out on off over under again further then
    once here there when where why how all any both each few more most other some such no nor not
    only own same so than too very s t can will just don should now d ll m o re ve y ain aren
    couldn didn doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won
    wouldn""".split()
)

#: what postings were tokenized with (a snapshot's manifest records it: made otherwise, it is rebuilt)
TOKENIZER = hashlib.blake2b(
    json.dumps({"stop": sorted(STOP_WORDS), "max": MAX_TOKEN, "fold": "NFKD-Mn", "split": "[^L N]", "stem": "snowball-english", "order": "stop words after stemming"}).encode(),
    digest_size=8,
).hexdigest()


_local = threading.local()  # a PyStemmer stemmer is not safe to share between threads
_SPLIT = re.compile(r"[\W_]+")  # Python's \w is letters, digits and "_": this is [^\p{L}\p{N}]+


def _stemmer():
    if not hasattr(_local, "stemmer"):
        import Stemmer

        _local.stemmer = Stemmer.Stemmer("english")
    return _local.stemmer


def tokenize(texts: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Each token of ``texts`` as (document index, token), documents in order (stop words are
    dropped after stemming: :func:`stems`)."""
    texts = pc.fill_null(pc.cast(texts, pa.string()), "")
    folded = pc.replace_substring_regex(pc.utf8_normalize(pc.utf8_lower(texts), "NFKD"), r"\p{Mn}+", "")
    split = pc.split_pattern_regex(folded, r"[^\p{L}\p{N}]+")
    tokens = pc.list_flatten(split)
    docs = pc.list_parent_indices(split)
    length = pc.utf8_length(tokens)
    keep = pc.and_(pc.greater(length, 0), pc.less_equal(length, MAX_TOKEN))
    return pc.filter(docs, keep).to_numpy().astype(np.int64), pc.filter(tokens, keep)


def term_hashes(terms: list[str]) -> np.ndarray:
    """A stable 64-bit hash of each term (collisions are negligible at any vocabulary size)."""
    return np.fromiter(
        (int.from_bytes(hashlib.blake2b(t.encode(), digest_size=8).digest(), "little") for t in terms), np.uint64, len(terms)
    )


def query_tokens(text: str) -> list[str]:
    """:func:`tokenize` for one short text, in Python (Arrow compiles its regexes per call:
    ~3 ms for a query); the tests hold the two to the same tokens."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if unicodedata.category(c) != "Mn")
    return [t for t in _SPLIT.split(folded) if 0 < len(t) <= MAX_TOKEN]


def stems(tokens: list[str]) -> list[str | None]:
    """Each token's stem, None where the stem is a stop word."""
    return [None if t in STOP_WORDS else t for t in _stemmer().stemWords(tokens)]


def query_terms(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The hashes of a query's distinct terms and how often each occurs (a repeated term
    counts as often as it is repeated, as in LanceDB)."""
    return np.unique(term_hashes([t for t in stems(query_tokens(text)) if t is not None]), return_counts=True)


@dataclass
class Postings:
    """One segment's inverted index: term ``hashes[i]`` occurs in local rows
    ``rows[starts[i]:starts[i+1]]`` with frequencies ``tfs[...]``; ``lengths`` per row."""

    hashes: np.ndarray  # (terms,) uint64, sorted
    starts: np.ndarray  # (terms + 1,) int64
    rows: np.ndarray  # (postings,) uint32
    tfs: np.ndarray  # (postings,) uint16
    lengths: np.ndarray  # (rows,) uint32
    _norms: tuple[float, np.ndarray] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def n_rows(self) -> int:
        return len(self.lengths)

    def norms(self, avgdl: float) -> np.ndarray:
        """Each row's BM25 length normalisation ``k1 (1 - b + b len / avgdl)``, float32, kept
        for the last ``avgdl`` (a query gathers it instead of converting lengths per posting)."""
        if self._norms is None or self._norms[0] != avgdl:
            self._norms = (avgdl, np.float32(K1 * (1 - B)) + np.float32(K1 * B / avgdl) * self.lengths.astype(np.float32))
        return self._norms[1]

    @classmethod
    def build(cls, texts: pa.Array) -> Postings:
        """Index ``texts`` (one document per row)."""
        docs, tokens = tokenize(texts)
        encoded = pc.dictionary_encode(tokens)
        token_ids = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        distinct = stems(encoded.dictionary.to_pylist())  # stemmed once per distinct token
        kept = np.array([t is not None for t in distinct], bool)
        vocab, stem_of = np.unique(term_hashes([t for t in distinct if t is not None]), return_inverse=True)
        term_of = np.full(len(distinct), -1, np.int64)
        term_of[kept] = stem_of
        terms = term_of[token_ids] if len(token_ids) else np.zeros(0, np.int64)
        docs, terms = docs[terms >= 0], terms[terms >= 0]
        pairs, tfs = np.unique(terms * len(texts) + docs, return_counts=True)  # sorted by term, then row
        term, row = np.divmod(pairs, max(1, len(texts)))
        starts = np.searchsorted(term, np.arange(len(vocab) + 1))
        lengths = np.bincount(docs, minlength=len(texts)).astype(np.uint32)
        return cls(vocab.astype(np.uint64), starts.astype(np.int64), row.astype(np.uint32),
                   np.minimum(tfs, 65535).astype(np.uint16), lengths)

    @classmethod
    def merge(cls, parts: list[Postings]) -> Postings:
        """One index over consecutive segments (rows renumbered), without re-tokenizing."""
        hashes, rows, tfs, offset = [], [], [], 0
        for p in parts:
            counts = np.diff(p.starts)
            hashes.append(np.repeat(p.hashes, counts))
            rows.append(p.rows.astype(np.int64) + offset)
            tfs.append(np.asarray(p.tfs))
            offset += p.n_rows
        h, r, t = (np.concatenate(a) for a in (hashes, rows, tfs))
        order = np.lexsort((r, h))
        vocab, first = np.unique(h[order], return_index=True)
        starts = np.append(first, len(order)).astype(np.int64)
        return cls(vocab, starts, r[order].astype(np.uint32), t[order], np.concatenate([p.lengths for p in parts]))

    def save(self, path: Path) -> None:
        write_arrays(path, {name: getattr(self, name) for name in ARRAYS})

    @classmethod
    def load(cls, path: Path) -> Postings:
        """Memory-map saved postings (views of the file: slicing an np.memmap costs ~5 us
        more, 75 slices a query)."""
        arrays = read_arrays(path)
        return cls(**{name: arrays[name] for name in ARRAYS})


@dataclass(frozen=True)
class Live:
    """Which rows are live (``alive``, a boolean mask over all rows), how many, and their mean
    length: BM25's collection statistics count these only, so a store's scores depend on its
    content, not on what was deleted or re-indexed before."""

    alive: np.ndarray
    n_docs: int
    avgdl: float

    @classmethod
    def of(cls, segments: list[tuple[int, Postings]], alive: np.ndarray) -> Live:
        n_docs = int(np.count_nonzero(alive))
        total = sum(float(np.sum(p.lengths[alive[first : first + p.n_rows]], dtype=np.float64)) for first, p in segments)
        return cls(alive, n_docs, max(total / max(n_docs, 1), 1e-9))


def search(segments: list[tuple[int, Postings]], text: str, k: int, allowed: np.ndarray, live: Live) -> list[tuple[int, float]]:
    """The ``k`` best rows by BM25 among those ``allowed`` (a boolean mask over all rows), best
    first, scored against the ``live`` rows' statistics; ``segments`` are (first row, postings)
    in row order."""
    hashes, repeats = query_terms(text)
    n_rows = len(live.alive)
    if not len(hashes) or not live.n_docs or k <= 0:
        return []
    lists = []  # (first row, postings, term index, query term) of each query term found
    for first, p in segments:
        if not len(p.hashes):
            continue
        at = np.minimum(np.searchsorted(p.hashes, hashes), len(p.hashes) - 1)
        lists += [(first, p, int(at[q]), q) for q in np.flatnonzero(p.hashes[at] == hashes)]
    if not lists:
        return []
    rows = [np.asarray(p.rows[p.starts[t] : p.starts[t + 1]], np.int64) + first for first, p, t, _ in lists]
    df = np.zeros(len(hashes), np.int64)
    for (_, _, _, q), at in zip(lists, rows):
        df[q] += np.count_nonzero(live.alive[at])
    idf = repeats * np.log1p((live.n_docs - df + 0.5) / (df + 0.5))
    n_postings = sum(len(at) for at in rows)
    scores = []
    for (first, p, t, q), at in zip(lists, rows):
        tf = np.asarray(p.tfs[p.starts[t] : p.starts[t + 1]], np.float32)
        scores.append(np.float32(idf[q] * (K1 + 1)) * tf / (tf + p.norms(live.avgdl)[at - first]))
    if n_postings > n_rows // DENSE_FRACTION:  # common terms: one score per row, then the matches
        dense = np.bincount(np.concatenate(rows), weights=np.concatenate(scores), minlength=n_rows)
        unique = np.flatnonzero(dense)  # every BM25 score of a matching row is > 0
        total = dense[unique]
    else:  # merge the terms' row lists, each sorted: a stable sort (timsort) merges sorted runs
        at = np.concatenate(rows)
        order = np.argsort(at, kind="stable")
        at = at[order]
        first = np.flatnonzero(np.concatenate(([True], at[1:] != at[:-1])))
        unique = at[first]
        # a row's scores summed in query-term order, in float64: the same sums as a bincount
        total = np.add.reduceat(np.concatenate(scores)[order].astype(np.float64), first)
    keep = allowed[unique]
    unique, total = unique[keep], total[keep]
    if not len(unique):
        return []
    top = np.argpartition(-total, k - 1)[:k] if len(total) > k else np.arange(len(total))
    top = top[np.lexsort((unique[top], -total[top]))]
    return [(int(unique[i]), float(total[i])) for i in top]


# -- the texts -----------------------------------------------------------------------------

COLUMNS = ("transcript", "caption", "screen_text")  # the texts BM25 indexes
MAX_SEGMENTS = 16
FEW = 64  # up to this many rows, :meth:`SceneTexts.get` reads scalars
SCHEMA = pa.schema([(c, pa.string()) for c in COLUMNS] + [("moments", MOMENTS_TYPE)])


def searchable(table: pa.Table) -> pa.Array:
    """What BM25 indexes for each scene: its transcript, caption, on-screen text and audio
    event tags (those of them ``table`` has)."""
    parts = [pc.fill_null(table.column(c).combine_chunks(), "") for c in COLUMNS if c in table.column_names]
    if "audio_events" in table.column_names:
        parts.append(pc.fill_null(pc.binary_join(table.column("audio_events").combine_chunks(), " "), ""))
    return pc.binary_join_element_wise(*parts, " ")


class SceneTexts:
    def __init__(self, root: Path | None = None):
        self.root = root  # None: in memory only
        self.starts: list[int] = []
        self.tables: list[pa.Table] = []
        self.postings: list[Postings] = []
        self._live: tuple[tuple[int, int], Live] | None = None  # BM25's statistics, and for which rows

    def __len__(self) -> int:
        return self.starts[-1] + self.tables[-1].num_rows if self.tables else 0

    @classmethod
    def open(cls, root: Path, n: int) -> SceneTexts:
        """Map the segments of a snapshot whose manifest vouches for them (rows ``[0, n)``)."""
        out = cls(root)
        found = sorted((int(p.stem.partition("-")[2]), p) for p in root.glob("texts-*.arrow"))
        for start, path in found:
            if start != len(out):
                raise ValueError(f"{root}: the text segments do not cover rows {len(out)}-{n} in order")
            out.starts.append(start)
            out.tables.append(read_table(path))
            out.postings.append(Postings.load(root / f"bm25-{start}.arrow"))
        if len(out) != n:
            raise ValueError(f"{root}: the text segments cover {len(out)} rows, not {n}")
        return out

    def clear(self) -> None:
        if self.root is not None:
            for path in self.root.glob("texts-*.arrow"):
                path.unlink(missing_ok=True)
            for path in self.root.glob("bm25-*.arrow"):
                path.unlink(missing_ok=True)
        self.starts, self.tables, self.postings = [], [], []

    def append(self, first_row: int, table: pa.Table) -> None:
        """Add the texts of rows ``[first_row, first_row + len(table))``."""
        if first_row != len(self):
            raise ValueError(f"text rows must be appended in order: expected row {len(self)}, got {first_row}")
        if not table.num_rows:
            return
        postings = Postings.build(searchable(table))
        table = pa.table({f.name: table.column(f.name) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
                          for f in SCHEMA}).cast(SCHEMA)
        if self.root is not None:
            table = self._write(first_row, table, postings)
        self.starts.append(first_row)
        self.tables.append(table)
        self.postings.append(postings)
        if self.root is not None and len(self.tables) > MAX_SEGMENTS:
            merged = self._write(0, pa.concat_tables(self.tables), Postings.merge(self.postings))
            old = self.starts[1:]
            self.starts, self.tables, self.postings = [0], [merged], [Postings.load(self.root / "bm25-0.arrow")]
            for start in old:
                (self.root / f"texts-{start}.arrow").unlink(missing_ok=True)
                (self.root / f"bm25-{start}.arrow").unlink(missing_ok=True)

    def get(self, rows) -> list[tuple[str, str, str]]:
        """``(transcript, caption, screen_text)`` of each row."""
        rows = np.asarray(rows, dtype=np.int64)
        out: list[tuple[str, str, str]] = [("", "", "")] * len(rows)
        segment = np.searchsorted(self.starts, rows, side="right") - 1
        if len(rows) <= FEW:  # a hit list: scalar reads (a take concatenates a segment's chunks)
            for i, (r, s) in enumerate(zip(rows.tolist(), segment.tolist())):
                table, local = self.tables[s], r - self.starts[s]
                out[i] = tuple(table.column(c)[local].as_py() or "" for c in COLUMNS)
            return out
        for s in np.unique(segment):
            at = np.flatnonzero(segment == s)
            taken = self.tables[s].take(pa.array(rows[at] - self.starts[s]))
            for i, values in zip(at, zip(*(taken.column(c).to_pylist() for c in COLUMNS))):
                out[i] = tuple(v or "" for v in values)
        return out

    def moments(self, rows) -> list[tuple[Moment, ...]]:
        """Each row's moments: its spoken words and screen lines."""
        out = []
        for r in np.asarray(rows, dtype=np.int64).tolist():
            s = int(np.searchsorted(self.starts, r, side="right")) - 1
            value = self.tables[s].column("moments")[r - self.starts[s]].as_py() or ()
            out.append(tuple(Moment(m["time"], m["text"], m["speaker"]) for m in value))
        return out

    def search(self, text: str, k: int, allowed: np.ndarray, alive: np.ndarray) -> list[tuple[int, float]]:
        """The ``k`` best rows for ``text`` by BM25 among the ``allowed`` ones, scored against
        the ``alive`` rows (both boolean masks over all rows)."""
        segments = list(zip(self.starts, self.postings))
        key = (len(alive), int(np.count_nonzero(alive)))  # changes with every append and delete
        if self._live is None or self._live[0] != key:
            self._live = (key, Live.of(segments, alive))
        return search(segments, text, k, allowed, self._live[1])

    def _write(self, first_row: int, table: pa.Table, postings: Postings) -> pa.Table:
        """Write a segment's postings and texts into the (staged) snapshot; the texts mapped."""
        postings.save(self.root / f"bm25-{first_row}.arrow")
        path = self.root / f"texts-{first_row}.arrow"
        write_table(path, table)
        return read_table(path)
