"""Command-line interface: a thin shell over :class:`egorag.Engine`. Heavy imports stay lazy so
``egorag --help`` and ``egorag videos`` start fast."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never wait on a model hub unless the user opts in
os.environ.setdefault("TRANSFORMERS_OFFLINE", os.environ["HF_HUB_OFFLINE"])
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from egorag.errors import EgoragError  # noqa: E402  (light module)


def parse_time(value: str) -> float:
    """Seconds as ``12.5``, ``mm:ss`` or ``hh:mm:ss`` (for argparse)."""
    from egorag.times import parse_time as parse

    try:
        return parse(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", help="store directory (default: $EGORAG_DB or ./egorag_db)")
    common.add_argument("--config", help="TOML config file (see README)")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info logs")
    common.add_argument("-v", "--verbose", action="store_true", help="debug logs")

    p = argparse.ArgumentParser(prog="egorag", description="Multimodal video retrieval: index videos, search scenes.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("index", parents=[common], help="index video files and folders")
    s.add_argument("paths", nargs="+")
    s.add_argument("--reindex", action="store_true", help="re-index videos even if unchanged")
    s.add_argument("--skip-bad", action="store_true", help="skip unreadable files (reported) instead of stopping")
    s.add_argument("--modalities", help="comma-separated required modalities (default: every one that loads)")
    s.add_argument("--low-memory", action="store_true", help="encode stage by stage, one model in memory at a time")
    s.add_argument("--workers", type=int, help="videos encoded at once and speech windows recognised side by side "
                   "([ingest] workers; default one per core, at most 8)")
    s.add_argument("--scenes", help="use these scenes, not shot detection: a PySceneDetect CSV or JSON [[start, end], ...] "
                   "for one video, or a folder of <video name>.scenes.json")
    s.add_argument("--ray", nargs="?", const=True, metavar="ADDRESS",
                   help="encode on a Ray cluster (ADDRESS, e.g. ray://head:10001; none: a local one) [ray extra]")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("search", parents=[common], help="search scenes by text or image")
    s.add_argument("text", nargs="?")
    s.add_argument("--image", help="image file to search with (CLIP)")
    s.add_argument("--like", metavar="SCENE_ID", help="more like this indexed scene (its own vectors as the query)")
    s.add_argument("-k", "--k", type=int, default=10)
    _filter_arguments(s)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("videos", parents=[common], help="list indexed videos")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("delete", parents=[common], help="delete videos (by id or path) and their scenes")
    s.add_argument("refs", nargs="+")

    s = sub.add_parser("classify", parents=[common], help="zero-shot classify images (or indexed scenes) with CLIP")
    s.add_argument("images", nargs="*")
    s.add_argument("--labels", required=True, help="comma-separated labels, e.g. 'a dog,a cat,a car'")
    s.add_argument("--scenes", action="store_true", help="classify the indexed scenes' keyframes instead")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("ask", parents=[common], help="answer a question from retrieved scenes with an LLM")
    s.add_argument("question")
    s.add_argument("--no-llm", action="store_true", help="print the grounded prompt and the evidence only")
    s.add_argument("--llm", choices=["openai", "transformers"], help="override [answer] llm")
    s.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    s.add_argument("--model", help="served model name, or a local transformers chat model directory")
    s.add_argument("-k", "--k", type=int, help="scenes retrieved as evidence")
    _filter_arguments(s)
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("eval", parents=[common], help="temporal hit@k / MRR of a JSONL query set")
    s.add_argument("queries", help="JSONL: one {query, video, start, end} per line")
    s.add_argument("--ablation", action="store_true", help="also each modality alone, no prior, RRF")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("serve", parents=[common], help="serve the HTTP API (OpenAPI at /docs) and the search page at /")
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (any but a loopback one needs --api-key)")
    s.add_argument("--port", type=int, default=8765)
    s.add_argument("--max-batch", type=int, default=32, help="most concurrent text queries answered in one batch")
    s.add_argument("--api-key", default=os.environ.get("EGORAG_API_KEY"),
                   help="key every route but /health needs (default: $EGORAG_API_KEY)")
    s.add_argument("--media-root", help="folder POST /videos may index files from (default: none)")

    s = sub.add_parser("mcp", parents=[common], help="serve search and ask as MCP tools for agents (stdio, or --http)")
    s.add_argument("--http", action="store_true", help="streamable HTTP at /mcp instead of stdio")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8766)

    s = sub.add_parser("check", parents=[common], help="verify a store (every row and search file); rebuild damaged search files")
    s.add_argument("--json", action="store_true")

    s = sub.add_parser("status", parents=[common], help="which modalities' weights are here, and how to enable the rest")
    s.add_argument("--json", action="store_true")
    s.add_argument("--load", action="store_true", help="load each model to check that it loads (seconds)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING
    # Libraries' own logs (open_clip logs failed downloads on the root logger) are noise next to
    # egorag's errors, which say the same with what to do; -v shows everything.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.CRITICAL, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("egorag").setLevel(level)
    try:
        return COMMANDS[args.command](args)
    except EgoragError as exc:
        print(f"egorag: error: {printable(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("egorag: interrupted; indexed videos are intact, run again to resume", file=sys.stderr)
        return 130


def _engine(args, **overrides):
    from dataclasses import replace

    from egorag.config import EngineConfig, load_config
    from egorag.engine import Engine

    config = load_config(args.config) if args.config else EngineConfig()
    if overrides:
        config = replace(config, **overrides)
    return Engine(args.db, config)


def cmd_index(args) -> int:
    overrides = {}
    if args.modalities:
        overrides["modalities"] = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
    if args.low_memory:
        overrides["low_memory"] = True
    if args.workers is not None:
        from egorag.config import IngestConfig

        overrides["ingest"] = IngestConfig(workers=args.workers)  # its only setting
    engine = _engine(args, **overrides)
    report = engine.index(args.paths, reindex=args.reindex, on_bad_media="skip" if args.skip_bad else "error", progress=not args.quiet,
                          ray=args.ray, scenes=args.scenes)
    if not (report.indexed or report.replaced or report.unchanged or report.failed):
        raise EgoragError(f"no video files found in {', '.join(map(str, args.paths))}")
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(report), indent=2, default=str))
    elif not args.quiet:
        print_modalities(report.modalities, args.verbose)
        print(
            f"indexed {len(report.indexed)} video(s), replaced {len(report.replaced)}, "
            f"unchanged {len(report.unchanged)}, failed {len(report.failed)}; {report.scenes} scenes, "
            f"{report.video_seconds:.1f}s of video in {report.wall_seconds:.1f}s"
        )
    for path, reason in report.failed:
        print(f"skipped {printable(path)}: {reason}", file=sys.stderr)
    return 0


def printable(text: str) -> str:
    """``text`` with control characters (a newline in a file name) shown as escapes, so one
    record stays one line."""
    return "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in text)


def print_modalities(statuses, verbose: bool = False) -> None:
    """One short line per modality: on with its model, or off with the fix (``-v``: the
    loader's full reason)."""
    statuses = list(statuses)
    width = max((len(st.name) for st in statuses), default=0)
    for st in statuses:
        mark = "on " if st.enabled else "off"
        print(f"  {st.name:{width}s} {mark} {st.detail if verbose else st.short()}")


def _filter_arguments(s) -> None:
    s.add_argument("--video", action="append", default=[], help="restrict to a video id (repeatable)")
    s.add_argument("--path", dest="path_glob", help="restrict to videos whose path matches this glob")
    s.add_argument("--from", dest="time_from", type=parse_time, help="only scenes ending after this time")
    s.add_argument("--to", "--before", dest="time_to", type=parse_time, help="only scenes starting before this time")
    s.add_argument("--audio-event", dest="audio_events", action="append", default=[], metavar="TAG",
                   help="only scenes tagged with this audio event, e.g. dog (repeatable: any of them)")
    s.add_argument("--speaker", dest="speakers", action="append", default=[], metavar="LABEL",
                   help="only scenes where this speaker talks, e.g. speaker_00 (repeatable: any of them)")


def _where(args):
    from egorag import SceneFilter

    where = SceneFilter(tuple(args.video), args.path_glob, args.time_from, args.time_to, tuple(args.audio_events), tuple(args.speakers))
    return None if where.is_empty() else where


def cmd_search(args) -> int:
    if args.like and (args.text or args.image):
        raise EgoragError("--like searches by a scene alone: drop the text query and --image")
    if not args.text and not args.image and not args.like:
        raise EgoragError("search needs a text query, --image IMG or --like SCENE_ID")
    engine = _engine(args)
    if args.like:
        result = engine.similar(args.like, k=args.k, where=_where(args))
    else:
        result = engine.search(args.text, image=args.image, k=args.k, where=_where(args))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print_hits(result)
    return 0


def print_hits(result) -> None:
    from pathlib import Path

    from egorag.times import mmss

    print(f"query: {result.query}")
    if not result.hits:
        print("  (no matching scenes)")
    for rank, h in enumerate(result.hits, 1):
        sources = " ".join(f"{m} {v:+.2f}" for m, v in h.scores.items())  # they add up to the score
        text = (h.transcript or h.screen_text.replace("\n", " / ") or h.caption or "").strip()
        snippet = text if len(text) <= 100 else text[:97] + "..."
        print(f"{rank:3d}. {printable(Path(h.video).name)} [{mmss(h.start)}-{mmss(h.end)}] score={h.score:.2f} ({sources})")
        if snippet:
            print(f"     \"{snippet}\"")
        heard = "; ".join(f"{name}: {', '.join(labels)}" for name, labels in (("speakers", h.speakers), ("sounds", h.audio_events)) if labels)
        if heard:
            print(f"     {printable(heard)}")


def cmd_videos(args) -> int:
    from egorag.times import mmss

    videos = _engine(args).videos()
    if args.json:
        print(json.dumps([v.summary() for v in videos], indent=2))
        return 0
    if not videos:
        print("no videos indexed")
    for v in videos:
        print(f"{v.video_id}  {mmss(v.info.duration):>8s}  {v.n_scenes:4d} scenes  {printable(v.path)}")
    return 0


def cmd_check(args) -> int:
    report = _engine(args).check()
    if args.json:
        from dataclasses import asdict

        print(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
        return 0 if report.ok else 1
    for line in report.repaired:
        print(f"repaired: {printable(line)}")
    for line in report.problems:
        print(f"damaged: {printable(line)}", file=sys.stderr)
    if report.ok:
        print(f"ok: {report.videos} video(s), {report.scenes} scene rows read; {report.search_files} search file(s) verified")
    return 0 if report.ok else 1


def cmd_delete(args) -> int:
    for v in _engine(args).delete(args.refs):
        print(f"deleted {v.video_id} {printable(v.path)}")
    return 0


def cmd_classify(args) -> int:
    labels = [x.strip() for x in args.labels.split(",") if x.strip()]
    if len(labels) < 2:
        raise EgoragError("--labels needs at least two comma-separated labels")
    if bool(args.images) == bool(args.scenes):
        raise EgoragError("give image files, or --scenes to classify indexed scenes (not both)")
    engine = _engine(args)
    results = engine.classify_scenes(labels) if args.scenes else engine.classify_images(args.images, labels)
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    for r in results:
        ranked = sorted(r.probabilities.items(), key=lambda kv: -kv[1])
        print(f"{r.item}: " + ", ".join(f"{lab} {p:.2f}" for lab, p in ranked))
    return 0


def cmd_ask(args) -> int:
    from dataclasses import replace

    engine = _engine(args)
    overrides = {k: v for k, v in (("llm", args.llm), ("endpoint", args.endpoint), ("model", args.model), ("k", args.k)) if v}
    if overrides:
        engine.config = replace(engine.config, answer=replace(engine.config.answer, **overrides))
    from egorag.errors import LLMError

    try:
        result = engine.ask(args.question, use_llm=not args.no_llm, where=_where(args))
    except LLMError as exc:
        raise LLMError(f"{exc}; or use --no-llm to see the prompt and evidence") from exc
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    if result.answer is None:
        for m in result.messages:
            print(f"--- {m['role']} ---\n{m['content']}\n")
        return 0
    print(result.answer)
    if result.cited:
        print("\ncited:")
        for h in result.cited:
            print(f"  {printable(result.tag(h))} {printable(h.video)}")
    return 0


def cmd_eval(args) -> int:
    results = _engine(args).evaluate(args.queries, ablation=args.ablation)
    if args.json:
        print(json.dumps({name: m.to_dict() for name, m in results.items()}, indent=2))
        return 0
    print(f"{'configuration':20s} {'n':>4s} {'hit@1':>6s} {'hit@5':>6s} {'hit@10':>6s} {'MRR':>6s}")
    for name, m in results.items():
        print(f"{name:20s} {m.n:4d} {m.hit_at_1:6.3f} {m.hit_at_5:6.3f} {m.hit_at_10:6.3f} {m.mrr:6.3f}")
    return 0


def cmd_serve(args) -> int:
    # Before FAISS loads OpenMP: its idle threads otherwise spin after every parallel region,
    # taking a core from the threads that answer requests (1.06-1.13x more queries per second
    # under load with them passive, the same single-query latency: benchmarks/RESULTS.md)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from egorag.server import EgoragServer

    if args.max_batch < 1:
        raise EgoragError(f"--max-batch must be at least 1, got {args.max_batch}")
    engine = _engine(args)
    try:
        server = EgoragServer(engine, args.host, args.port, args.max_batch, api_key=args.api_key or None,
                              media_root=args.media_root)
    except OSError as exc:
        raise EgoragError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    if not args.quiet:
        logging.getLogger("egorag.server").setLevel(logging.INFO if args.verbose else logging.WARNING)
        print(f"serving {engine.db} on {server.url} (the page at /, the API at /docs); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("egorag: server stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0


def cmd_mcp(args) -> int:
    from egorag.integrations.mcp_server import create_server

    engine = _engine(args)
    engine.retriever()  # the store opened and the query encoders loaded before the first call
    server = create_server(engine)
    if args.http:
        print(f"serving MCP tools for {engine.db} on http://{args.host}:{args.port}/mcp; Ctrl-C stops", file=sys.stderr, flush=True)
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run("stdio")  # stdout carries the protocol: nothing else may be printed there
    return 0


def cmd_status(args) -> int:
    from egorag.models import load_models, probe_models

    config = _engine(args).config
    statuses = load_models(config).status if args.load else probe_models(config)
    if args.json:
        print(json.dumps([{"name": s.name, "enabled": s.enabled, "detail": s.detail} for s in statuses.values()], indent=2))
    else:
        print_modalities(statuses.values(), args.verbose)
    return 0


COMMANDS = {
    "check": cmd_check,
    "index": cmd_index,
    "search": cmd_search,
    "videos": cmd_videos,
    "delete": cmd_delete,
    "classify": cmd_classify,
    "eval": cmd_eval,
    "ask": cmd_ask,
    "serve": cmd_serve,
    "mcp": cmd_mcp,
    "status": cmd_status,
}

if __name__ == "__main__":
    sys.exit(main())
