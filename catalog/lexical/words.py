"""The words of a query and what a lexical backend answers for them."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_WORDS = 32  # words of a query that count
_WORD = re.compile(r"\w", re.UNICODE)


def query_words(text: str) -> list[str]:
    """The query split on white space, once each (any case), those with a letter or digit."""
    seen: set[str] = set()
    out: list[str] = []
    for chunk in text.split():
        key = chunk.casefold()
        if _WORD.search(chunk) and key not in seen:
            seen.add(key)
            out.append(chunk)
    return out[:MAX_WORDS]


@dataclass(frozen=True)
class LexicalRanking:
    """Products that have any of the query's words: those with more of the words first,
    then by the backend's relevance (BM25, ts_rank), then by id."""

    product_ids: list[int]
    words_matched: dict[int, int]  # how many of the query's words each product has
    words: int  # how many words the query has

    @classmethod
    def ordered(cls, ranked: list[int], matched: dict[int, int], words: int) -> LexicalRanking:
        """`ranked` (by relevance) put in order of words matched, keeping relevance within."""
        ids = sorted(ranked, key=lambda pid: -matched.get(pid, 0))  # stable
        return cls(ids, {pid: matched.get(pid, 0) for pid in ids}, words)

    def first(self, limit: int) -> LexicalRanking:
        """The ranking cut after `limit` products."""
        ids = self.product_ids[:limit]
        return LexicalRanking(ids, {pid: self.words_matched[pid] for pid in ids}, self.words)


NOTHING = LexicalRanking([], {}, 0)
