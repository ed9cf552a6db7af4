"""GPU exact search: egorag's blockwise top-k (index.vectors.TorchExactIndex) vs the naive
``torch.topk(Q @ X.T, k)``, same matrix, same queries, same run, results checked equal.

    python benchmarks/gpu_bench.py [--rows 10000000] [--dim 512] [--blocks 65536 262144]

Needs a CUDA device (the lent H100 via the device tool; CI never has one). The naive way writes and
re-reads the full (batch x rows) score matrix; the blockwise scan keeps only a running top-k.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import torch

    from index.vectors import TorchExactIndex

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 1024])
    parser.add_argument("--blocks", type=int, nargs="+", default=[65536, 262144, 1048576])
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_bench.py needs a CUDA device")
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    x = torch.randn(args.rows, args.dim, device=dev, dtype=torch.float16, generator=g)
    x /= x.norm(dim=1, keepdim=True)

    def timeit(fn, reps=10):
        fn()
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(reps):
            out = fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / reps, out

    figures = {"rows": args.rows, "dim": args.dim, "device": torch.cuda.get_device_name()}
    for b in args.batches:
        q = torch.randn(b, args.dim, device=dev, dtype=torch.float16, generator=g)
        q /= q.norm(dim=1, keepdim=True)
        naive_ms, (ns, ni) = timeit(lambda: torch.topk(q @ x.T, args.k, dim=1))
        row = {"naive_ms": naive_ms, "naive_qps": b / naive_ms * 1000, "naive_scan_TBps": args.rows * args.dim * 2 / naive_ms / 1e9}
        for block in args.blocks:
            index = TorchExactIndex.from_tensor(x, block)
            ms, (bs, bi) = timeit(lambda: index.search_tensor(q, args.k))
            same = float((bi.sort(dim=1).values == ni.sort(dim=1).values).float().mean())
            row[f"blockwise_{block}"] = {"ms": ms, "qps": b / ms * 1000, "same_ids": same, "speedup": naive_ms / ms}
        figures[f"batch_{b}"] = row
        print(b, row, flush=True)
    from common import save

    save("gpu_bench", figures)


if __name__ == "__main__":
    main()
