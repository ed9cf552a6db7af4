"""Exact inner-product search with torch on any device, blockwise (for CUDA hosts without faiss-gpu)."""

from __future__ import annotations

import numpy as np


class TorchExactIndex:
    """Exact inner-product search on a torch device, blockwise: each block of the matrix is scored
    and reduced to its top-k at once, so the full (queries x vectors) score matrix never exists.
    Used on CUDA hosts without faiss-gpu; runs on the CPU too (tests)."""

    def __init__(self, vectors: np.ndarray, device: str = "cuda", dtype: str = "float16", block: int = 1 << 20):
        import torch

        self.torch = torch
        self.device = device
        self.dtype = getattr(torch, dtype)
        self.block = block
        self.matrix = torch.from_numpy(np.ascontiguousarray(vectors)).to(device=device, dtype=self.dtype)

    @classmethod
    def from_tensor(cls, matrix, block: int = 1 << 20) -> TorchExactIndex:
        """Wrap a matrix already on its device (no copy)."""
        import torch

        self = cls.__new__(cls)
        self.torch, self.device, self.dtype, self.block, self.matrix = torch, matrix.device, matrix.dtype, block, matrix
        return self

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = self.torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(self.device, self.dtype)
        scores, ids = self.search_tensor(q, k)
        return scores.float().cpu().numpy(), ids.cpu().numpy()

    def search_tensor(self, q, k: int):
        """Top-k on device tensors: (scores, row ids), best first."""
        torch = self.torch
        n = self.matrix.shape[0]
        k = min(k, n)
        best_s = best_i = None
        with torch.inference_mode():
            for start in range(0, n, self.block):
                scores = q @ self.matrix[start : start + self.block].T
                s, i = torch.topk(scores, min(k, scores.shape[1]), dim=1)
                i = i + start
                if best_s is None:
                    best_s, best_i = s, i
                else:
                    merged_s = torch.cat([best_s, s], dim=1)
                    merged_i = torch.cat([best_i, i], dim=1)
                    best_s, order = torch.topk(merged_s, k, dim=1)
                    best_i = torch.gather(merged_i, 1, order)
        return best_s, best_i
