"""A tiny llama-architecture GGUF model that the project makes itself, for Ollama in the sandbox.

Random weights (seeded, so the same file every time) in a few MiB, with a real SentencePiece-style vocabulary
in the GGUF metadata (``tokenizer.ggml.model = llama``: ``<unk>``, ``<s>``, ``</s>``, the 256 byte-fallback
tokens ``<0x00>``..``<0xFF>`` and about a hundred word pieces), which Ollama's own engine loads as it loads a
Llama model's. Its answers are gibberish, but they are computed by the model: a prompt is tokenized, runs
through every layer and is sampled token by token, and usage counts are real. Nothing is downloaded.

    python -m tests.realnode.tiny_gguf OUT.gguf
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import gguf
import numpy as np

#: The shape of the tiny model (llama: RMSNorm, RoPE, grouped-query attention, SwiGLU).
EMBEDDING = 128
LAYERS = 4
HEADS = 4
KV_HEADS = 2
FFN = 384
CONTEXT = 2048
SEED = 13
#: Word pieces after the specials and the byte tokens ("▁" marks a word start, as SentencePiece writes it).
_WORDS = (
    "the a an is are was be to of and in on for with that this it as at by from or not no yes you I we they "
    "he she model answer question data cloud cluster node pod gateway route policy prompt token tokens chat "
    "hello world ollama llama vllm kubernetes test tiny random weights says reply ok good fine one two three "
    "four five six seven eight nine ten red green blue small large fast slow first last next done because so"
)
WORDS = tuple(_WORDS.split())
#: SentencePiece token types, as the GGUF tokenizer metadata stores them (llama.cpp's llama_token_type).
NORMAL, UNKNOWN, CONTROL, BYTE = 1, 2, 3, 6


def vocabulary() -> tuple[list[str], list[float], list[int]]:
    tokens = ["<unk>", "<s>", "</s>"]
    types = [UNKNOWN, CONTROL, CONTROL]
    tokens += [f"<0x{byte:02X}>" for byte in range(256)]
    types += [BYTE] * 256
    pieces = ["▁"] + [f"▁{word}" for word in WORDS] + list("abcdefghijklmnopqrstuvwxyz.,!?")
    tokens += pieces
    types += [NORMAL] * len(pieces)
    # Higher score = merged first; longer pieces win, as in a trained SentencePiece model.
    scores = [0.0] * (3 + 256) + [float(len(piece)) - 100.0 for piece in pieces]
    return tokens, scores, types


def parameters() -> int:
    """Every weight of the model (embeddings and output untied, norms included)."""
    vocab, head_dim = len(vocabulary()[0]), EMBEDDING // HEADS
    attention = 2 * EMBEDDING * HEADS * head_dim + 2 * EMBEDDING * KV_HEADS * head_dim
    block = 2 * EMBEDDING + attention + 3 * EMBEDDING * FFN
    return 2 * vocab * EMBEDDING + LAYERS * block + EMBEDDING


def write(path: Path) -> str:
    """Write the model to PATH; return its sha256 (hex)."""
    tokens, scores, types = vocabulary()
    rng = np.random.default_rng(SEED)

    def weight(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    head_dim = EMBEDDING // HEADS
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("modelyard-tiny")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(EMBEDDING)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    writer.add_vocab_size(len(tokens))
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # numpy shapes are (rows, columns) = GGUF's (ne1, ne0): a linear layer's weight is (out, in).
    writer.add_tensor("token_embd.weight", weight(len(tokens), EMBEDDING))
    for layer in range(LAYERS):
        block = f"blk.{layer}"
        writer.add_tensor(f"{block}.attn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        writer.add_tensor(f"{block}.attn_q.weight", weight(HEADS * head_dim, EMBEDDING))
        writer.add_tensor(f"{block}.attn_k.weight", weight(KV_HEADS * head_dim, EMBEDDING))
        writer.add_tensor(f"{block}.attn_v.weight", weight(KV_HEADS * head_dim, EMBEDDING))
        writer.add_tensor(f"{block}.attn_output.weight", weight(EMBEDDING, HEADS * head_dim))
        writer.add_tensor(f"{block}.ffn_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
        writer.add_tensor(f"{block}.ffn_gate.weight", weight(FFN, EMBEDDING))
        writer.add_tensor(f"{block}.ffn_up.weight", weight(FFN, EMBEDDING))
        writer.add_tensor(f"{block}.ffn_down.weight", weight(EMBEDDING, FFN))
    writer.add_tensor("output_norm.weight", np.ones(EMBEDDING, dtype=np.float32))
    writer.add_tensor("output.weight", weight(len(tokens), EMBEDDING))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.realnode.tiny_gguf OUT.gguf")
    out = Path(sys.argv[1])
    digest = write(out)
    print(f"{out}: {out.stat().st_size} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
