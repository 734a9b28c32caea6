"""HybridRetriever: dense top-k and BM25 top-k of one user's chunks, fused by reciprocal rank fusion.

Why RRF: cosine similarities and BM25 scores live on unrelated scales; fusing ranks needs no tuning and
is robust (Cormack et al., 2009). `RAG_MIN_SCORE` applies to the dense cosine only, where it has a
meaning; a keyword hit counts on its own (an exact term, a code, a name the embedder blurs).
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.rag.ports import Embedder, KeywordIndex, ScoredChunk, VectorStore

RRF_K = 60
"""The constant of reciprocal rank fusion: score = sum over lists of 1 / (RRF_K + rank)."""
CANDIDATES_PER_RESULT = 4
MIN_CANDIDATES = 20


def reciprocal_rank_fusion(rankings: Sequence[Sequence[ScoredChunk]], top_k: int) -> list[ScoredChunk]:
    """Fuse best-first lists; ties keep the order of first appearance (dense before keyword)."""
    fused: dict[str, float] = {}
    chunks: dict[str, ScoredChunk] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, start=1):
            key = hit.record.chunk_id
            fused[key] = fused.get(key, 0.0) + 1.0 / (RRF_K + rank)
            chunks.setdefault(key, hit)
    order = sorted(fused, key=lambda key: fused[key], reverse=True)  # stable: first appearance wins ties
    return [ScoredChunk(chunks[key].record, fused[key]) for key in order[:top_k]]


class HybridRetriever:
    """Implements DocumentRetriever. Scoped to one user by construction: every store call names them."""

    def __init__(
        self, embedder: Embedder, vectors: VectorStore, keywords: KeywordIndex,
        *, min_score: float, hybrid: bool,
    ) -> None:
        self._embedder = embedder
        self._vectors = vectors
        self._keywords = keywords
        self.min_score = min_score
        self.hybrid = hybrid

    async def dense(self, username: str, query: str, top_k: int) -> list[ScoredChunk]:
        """Dense hits at or above the minimum cosine, best first; scores are cosines."""
        vector = await self._embedder.embed([query])
        hits = await self._vectors.search(username, vector[0], top_k)
        return [hit for hit in hits if hit.score >= self.min_score]

    async def search(self, username: str, query: str, top_k: int) -> list[ScoredChunk]:
        """Best first. Dense only: scores are cosines. Hybrid: scores are fused RRF scores."""
        if top_k < 1 or not query.strip():
            return []
        if not self.hybrid:
            return await self.dense(username, query, top_k)
        candidates = max(top_k * CANDIDATES_PER_RESULT, MIN_CANDIDATES)
        dense = await self.dense(username, query, candidates)
        keyword = await self._keywords.search(username, query, candidates)
        return reciprocal_rank_fusion([dense, keyword], top_k)
