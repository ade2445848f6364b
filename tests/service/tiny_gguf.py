"""A tiny llama model for a real llama.cpp server: 2 layers, 64 dimensions, random weights and
a word-level vocabulary, written with the `gguf` package (no download: there is no hub here).

It talks nonsense, but through the same code paths as a real model: tokenizer, chat template,
sampling, grammars (tool calls), streaming.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

WORDS = (
    "hello world the a of and to in is it you that he was for on are with as i his they be at "
    "one have this from or had by hot word but what some we can out other were all there when "
    "up use your how said an each she which do their time if will way about many then them "
    "write would like so these her long make thing see him two has look more day could go come "
    "did number sound no most people my over know water than call first who may down side been "
    "now find any new work part take get place made live where after back little only round man "
    "year came show every good me give our under name very through just form sentence great "
    "think say help low line differ turn cause much mean before move right boy old too same tell "
    "does set three want air well also play small end put home read hand port large spell add "
    "even land here must big high such follow act why ask men change went light kind off need "
    "house picture try us again animal point mother near build self earth father head stand own "
    "page should country found answer school grow study still learn plant cover food sun four "
    "weather"
).split()
PUNCTUATION = list(".,!?:;'\"()[]{}<>-_=+*/\\|@#$%^&~`0123456789")
EMBEDDING, LAYERS, HEADS, FEED_FORWARD, CONTEXT = 64, 2, 4, 128, 2048
CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    """SentencePiece-style pieces: specials, byte fallback, characters, then every word with
    each of its prefixes (llama.cpp's tokenizer merges pairs only into pieces it knows)."""
    normal, control, byte = (
        gguf.TokenType.NORMAL,
        gguf.TokenType.CONTROL,
        gguf.TokenType.BYTE,
    )
    tokens = ["<unk>", "<s>", "</s>", "<|im_start|>", "<|im_end|>"]
    types = [gguf.TokenType.UNKNOWN, control, control, control, control]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [byte] * 256
    pieces: dict[str, None] = {}
    for char in [*"abcdefghijklmnopqrstuvwxyz", *PUNCTUATION, "\u2581"]:
        pieces[char] = None
    for word in WORDS:
        marked = "\u2581" + word
        for end in range(2, len(marked) + 1):
            pieces[marked[:end]] = None
    tokens += list(pieces)
    types += [normal] * len(pieces)
    scores = [0.0] * (len(tokens) - len(pieces)) + [float(len(p)) for p in pieces]
    return tokens, scores, [int(t) for t in types]


def write_tiny_llama(path: Path, seed: int = 0) -> Path:
    tokens, scores, types = vocabulary()
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("chatservice-tiny-random")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FEED_FORWARD)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(HEADS)
    writer.add_rope_dimension_count(EMBEDDING // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(4)  # <|im_end|> ends a ChatML turn
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)

    def tensor(name: str, *shape: int) -> None:
        weights = rng.normal(0, 0.2, size=shape).astype(np.float32)
        writer.add_tensor(name, weights)

    def norm(name: str) -> None:
        writer.add_tensor(name, np.ones(EMBEDDING, dtype=np.float32))

    vocab = len(tokens)
    tensor("token_embd.weight", vocab, EMBEDDING)
    norm("output_norm.weight")
    tensor("output.weight", vocab, EMBEDDING)
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        norm(f"{block}.attn_norm.weight")
        for part in ("q", "k", "v", "output"):
            tensor(f"{block}.attn_{part}.weight", EMBEDDING, EMBEDDING)
        norm(f"{block}.ffn_norm.weight")
        tensor(f"{block}.ffn_gate.weight", FEED_FORWARD, EMBEDDING)
        tensor(f"{block}.ffn_up.weight", FEED_FORWARD, EMBEDDING)
        tensor(f"{block}.ffn_down.weight", EMBEDDING, FEED_FORWARD)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
