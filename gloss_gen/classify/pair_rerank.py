"""FuDD's second look: re-rank the top-k classes of a first pass with descriptions written to tell
exactly those classes apart (Esfandiarpoor & Bach, "Follow-Up Differential Descriptions", ICLR 2024;
``fudd_model.py`` ``image_logit_pred`` with ``prompt_factory.py`` ``get_prompts(prompt_type="gpt")``).

For one image with first-pass candidates ``t_1 … t_k``: class ``t_p`` is represented by the
distinct texts of its side of every pair ``(t_p, t_q)``, ``q ≠ p``, plus the class-name prompt
``a photo of a {name}.`` when at least one of those pairs has no descriptions; its embedding is the
normalised mean of those texts' unit embeddings, and its new logit the cosine with the image.
The answer is the argmax over the k candidates. Per image that is a few hundred row lookups and k
dot products on precomputed rows (:class:`~gloss_gen.classify.pair_embeddings.PairEmbeddings`).

Two deliberate differences from FuDD's script, neither changing a score: texts are embedded as
written (FuDD capitalises them; CLIP's tokenizer lowercases everything anyway), and with ``k = 1``
the first pass is the answer (FuDD's ``get_prompts`` returns class 0's texts for a single class).
"""

from __future__ import annotations

import torch

from gloss_gen.classify.pair_embeddings import PairEmbeddings
from gloss_gen.core.errors import InputError


class PairRerankError(InputError):
    """Pair embeddings that cannot re-rank a classifier's classes."""

    code = "rerank_unavailable"


class PairReranker:
    """A class set's pair embeddings on a device, aligned with a scoring head's class order."""

    def __init__(self, pairs: PairEmbeddings, class_ids: list[str], device: str | torch.device = "cpu"):
        if list(pairs.class_set.ids) != list(class_ids):
            raise PairRerankError(
                f"pair embeddings {pairs.key} were built for class set {pairs.class_set.name} with other classes "
                "than the classifier's; rebuild them (vgloss embed PAIRS.jsonl)")
        self.pairs = pairs
        self.key = pairs.key
        self.rows = torch.from_numpy(pairs.embeddings).to(device)
        self.texts = pairs.texts
        self.fallback = pairs.fallback_row.tolist()
        self.sides = pairs.sides()

    def candidate_rows(self, candidates: list[int]) -> list[list[int]]:
        """For each candidate class, the rows of its texts against the other candidates."""
        out = []
        for p, cls in enumerate(candidates):
            rows: dict[int, None] = {}
            missing = False
            for q, other in enumerate(candidates):
                if q == p:
                    continue
                side = self.sides.get((cls, other) if cls < other else (other, cls))
                if side is None:
                    missing = True
                else:
                    rows.update(dict.fromkeys(side[0] if cls < other else side[1]))
            if missing:
                rows[self.fallback[cls]] = None
            out.append(list(rows))
        return out

    def cosines(self, image_emb: torch.Tensor, candidates: torch.Tensor,
                with_evidence: bool = False) -> tuple[torch.Tensor, list[list[str]] | None]:
        """(B, k) cosines of unit image embeddings (B, D) with each candidate's pair embedding
        (``candidates``: (B, k) class indices); with ``with_evidence``, each candidate's text most
        similar to the image."""
        image_emb = image_emb.to(self.rows.device, dtype=torch.float32)
        batch, k = candidates.shape
        flat: list[int] = []
        segment: list[int] = []
        for b, cands in enumerate(candidates.tolist()):
            for p, rows in enumerate(self.candidate_rows(cands)):
                flat.extend(rows)
                segment.extend([b * k + p] * len(rows))
        flat_t = torch.tensor(flat, dtype=torch.int64, device=self.rows.device)
        segment_t = torch.tensor(segment, dtype=torch.int64, device=self.rows.device)
        picked = self.rows.index_select(0, flat_t)
        sums = torch.zeros(batch * k, self.rows.shape[1], dtype=picked.dtype, device=picked.device)
        sums.index_add_(0, segment_t, picked)
        class_emb = sums / sums.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        cos = (class_emb.view(batch, k, -1) * image_emb.unsqueeze(1)).sum(-1)
        if not with_evidence:
            return cos, None
        row_sim = (picked * image_emb.index_select(0, segment_t // k)).sum(-1).tolist()
        best: dict[int, tuple[float, int]] = {}
        for seg, row, sim in zip(segment, flat, row_sim):
            if seg not in best or sim > best[seg][0]:
                best[seg] = (sim, row)
        evidence = [[self.texts[best[b * k + p][1]] for p in range(k)] for b in range(batch)]
        return cos, evidence
