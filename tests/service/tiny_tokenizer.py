"""A Hugging Face `tokenizer.json` over the tiny GGUF's vocabulary, written with `tokenizers`.

WordPiece, like the GGUF's pieces: every known word and each of its prefixes starts a word,
single characters continue one (`##c`), so "stub" is `stu ##b`; lower-cased, split at spaces
and punctuation.
"""

from __future__ import annotations

import string
from pathlib import Path

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from tests.service.tiny_gguf import PUNCTUATION, WORDS

UNKNOWN = "[UNK]"


def vocabulary() -> dict[str, int]:
    pieces: dict[str, None] = {UNKNOWN: None}
    for char in [*string.ascii_lowercase, *PUNCTUATION]:
        pieces[char] = None
        pieces["##" + char] = None
    for word in WORDS:
        for end in range(1, len(word) + 1):
            pieces[word[:end]] = None
    return {piece: number for number, piece in enumerate(pieces)}


def write_tiny_tokenizer(path: Path) -> Path:
    tokenizer = Tokenizer(models.WordPiece(vocabulary(), unk_token=UNKNOWN))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.save(str(path))
    return path
