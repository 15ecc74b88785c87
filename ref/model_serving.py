"""Serving paths of the decoder (llmref.ref.model): a paged KV cache (block allocator,
block tables, prefix caching across requests that share a prompt) and a small
continuous-batching scheduler over it.

Every path computes what the full causal forward computes: the cache only changes which keys
are recomputed. The cache object receives, per layer, the new tokens' rotated queries, keys
and values and returns their attention over everything the sequence holds; the model calls
it in place of causal sdpa. MLA caches its latent [c_kv | k_pe] as one KV head, key and value
alike. Blocks, reference counts and chain hashes are the paged_kv_allocator component's
(its PagedKVCache); keys are written by the kv_write component and read, one query per
sequence, by paged_attention_decode.
"""
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from llmref.errors import InputError
from llmref.ref.model import GREEDY, Sampling, decoder_forward, next_tokens, reference_module
from llmref.validate import int_array, integer


def gather_context(pool, block_table, length):
    """(length, Hkv, d): the first `length` token slots of one sequence, block by block
    through its table (token j lives in block_table[j // block_size] at j % block_size)."""
    n_blocks = -(-length // pool.shape[1])
    return pool[np.asarray(block_table[:n_blocks])].reshape(-1, *pool.shape[2:])[:length]


# ============================================================================ paged

class PagedModelCache:
    """Per layer, K and V pools (num_blocks, block_size, Hkv, d) shared by every sequence;
    blocks, block tables and prefix caching come from the paged_kv_allocator reference's
    PagedKVCache (reference counts, chain hashes of full blocks, LRU eviction of freed blocks).

    A forward is either one sequence's prefill (its uncached prompt tokens, attended over
    its whole context gathered from the pools, bottom-right causal, by sdpa) or one decode
    token for each of several sequences (paged_attention_decode over their block tables).
    New keys are written by kv_write. MLA's latent is one pool used as keys and values.
    No sequence is forked here, so only full blocks (prefix-cache hits) are ever shared and
    the allocator's copy-on-write of a shared partial block, which would have to copy pool
    rows too, never happens."""

    def __init__(self, num_blocks: int, block_size: int, prefix_caching: bool = True):
        self.blocks = reference_module("paged_kv_allocator").PagedKVCache(
            num_blocks, block_size, prefix_caching)
        self.block_size = block_size
        self.k, self.v = {}, {}
        self.hit_tokens = {}  # seq -> prompt tokens its prefix-cache hits hold
        self.mode, self.seqs, self.slots, self.lengths = None, [], None, None  # current forward

    def arrive(self, seq: int, prompt) -> int:
        """Allocate a new sequence's prompt; returns how many of its leading tokens already
        have their keys in the pools (prefix-cache hits), at most len(prompt) - 1 so that the
        last prompt token is always computed (its logits start generation). Raises
        OutOfBlocks, changing nothing, when the free blocks do not suffice."""
        _, flags = self.blocks.arrive(seq, [int(t) for t in prompt])
        self.hit_tokens[seq] = sum(flags) * self.block_size
        return min(self.hit_tokens[seq], len(prompt) - 1)

    def prefill(self, c, w, seq, prompt, cached, ops=None):
        """Logits (1, n, V) of prompt[cached:] of a sequence that has arrived. A token whose
        key a cache hit already holds (the last one, when every block hit) is recomputed
        for its logits but not written again (slot -1)."""
        positions = np.arange(cached, len(prompt))
        self.mode, self.seqs = "prefill", [seq]
        self.slots = np.array([-1 if pos < self.hit_tokens[seq] else self.blocks.slot(seq, int(pos))
                               for pos in positions], dtype=np.int64)
        self.lengths = np.array([len(prompt)], dtype=np.int64)
        tokens = np.asarray(prompt[cached:], dtype=np.int64)[None]
        return decoder_forward(c, w, tokens, ops, cache=self, positions=positions)

    def decode(self, c, w, seqs, tokens, ops=None):
        """Append one token to each sequence (allocating blocks as needed) and return the
        logits (len(seqs), 1, V) of those tokens."""
        positions = np.array([len(self.blocks.tokens[s]) for s in seqs], dtype=np.int64)
        self.mode, self.seqs = "decode", list(seqs)
        self.slots = np.array([self.blocks.append(s, int(t)) for s, t in zip(seqs, tokens)],
                              dtype=np.int64)
        self.lengths = positions + 1
        return decoder_forward(c, w, np.asarray(tokens, np.int64)[:, None], ops, cache=self,
                               positions=positions[:, None])

    def free(self, seq):
        self.blocks.free(seq)
        self.hit_tokens.pop(seq, None)

    def attend(self, layer, q, k, v, scale, window, ops):
        """Write the new keys and values to their slots, then attend (see the class doc)."""
        n_kv, width = k.shape[1], k.shape[3]
        latent = k is v  # MLA: one pool, keys and values alike
        if layer not in self.k:
            shape = (self.blocks.allocator.num_blocks, self.block_size, n_kv, width)
            self.k[layer] = np.zeros(shape, dtype=k.dtype)
            self.v[layer] = self.k[layer] if latent else np.zeros(shape[:3] + (v.shape[3],), v.dtype)
        key = k.transpose(0, 2, 1, 3).reshape(-1, n_kv, width)  # (T, Hkv, d), sequence order
        value = v.transpose(0, 2, 1, 3).reshape(-1, n_kv, v.shape[3])
        written = ops.kv_write(key=key, value=value, slot_mapping=self.slots,
                               k_cache=self.k[layer], v_cache=self.v[layer])
        self.k[layer] = written["k_cache_out"]
        self.v[layer] = self.k[layer] if latent else written["v_cache_out"]
        tables = [self.blocks.tables[s] for s in self.seqs]
        if self.mode == "prefill":
            length = int(self.lengths[0])
            keys = gather_context(self.k[layer], tables[0], length).transpose(1, 0, 2)[None]
            values = gather_context(self.v[layer], tables[0], length).transpose(1, 0, 2)[None]
            return ops.sdpa(q=q, k=keys, v=values, key_padding_mask=np.ones((1, length), bool),
                            causal=True, window=window, scale=scale)  # (1, Hq, n, d)
        if window and self.lengths.max() > window:
            raise InputError(f"sliding_window: paged decode attends the whole context; "
                             f"{self.lengths.max()} tokens exceed the window {window}")
        columns = max(len(t) for t in tables)
        block_tables = np.array([t + [0] * (columns - len(t)) for t in tables], dtype=np.int32)
        out = ops.paged_attention_decode(q=q[:, :, 0], k_cache=self.k[layer],
                                         v_cache=self.v[layer], block_tables=block_tables,
                                         seq_lens=self.lengths.astype(np.int32), scale=scale)
        return out[:, :, None]  # (B, Hq, 1, d)


def paged_logits(c, w, prompt, continuation, ops=None, block_size=4, prefix_caching=True):
    """cached_logits through a PagedModelCache: each prompt prefilled alone (reusing the
    blocks of earlier prompts it shares), then every sequence decoded together, one token
    per step. Equal to cached_logits and to the full forward."""
    prompt, continuation = np.asarray(prompt), np.asarray(continuation)
    batch = prompt.shape[0]
    blocks_each = -(-(prompt.shape[1] + continuation.shape[1]) // block_size)
    cache = PagedModelCache(batch * blocks_each, block_size, prefix_caching)
    first = []
    for seq in range(batch):
        cached = cache.arrive(seq, prompt[seq])
        first.append(cache.prefill(c, w, seq, prompt[seq], cached, ops)[:, -1:])
    steps = [np.concatenate(first, axis=0)]
    for t in range(continuation.shape[1]):
        steps.append(cache.decode(c, w, list(range(batch)), continuation[:, t], ops))
    return np.concatenate(steps, axis=1)


# ============================================================================ scheduler

@dataclass
class Request:
    """A generation request: its prompt, how many tokens to generate, how to choose them
    (uniforms[t] drives step t of a sampled request) and the scheduler step it arrives at."""
    prompt: list
    max_new_tokens: int
    sampling: Sampling = GREEDY
    uniforms: list = field(default_factory=list)
    arrival: int = 0


@dataclass
class ServeStats:
    """Throughput-relevant counts of one serve() run."""
    steps: int = 0                  # scheduler iterations (each: admissions, then one decode)
    decode_steps: int = 0           # batched decode forwards
    prefills: int = 0               # prompts prefilled (one forward each)
    occupancy: list = field(default_factory=list)  # running requests / slots, per decode step
    prompt_blocks: int = 0          # full prompt blocks looked up in the prefix cache
    cached_blocks: int = 0          # ... of which were hits
    prefill_tokens: int = 0         # prompt tokens computed
    cached_tokens: int = 0          # prompt tokens whose keys a hit supplied
    generated_tokens: int = 0

    @property
    def hit_rate(self) -> float:
        """Prefix-cache hits per full prompt block looked up (0 when none was)."""
        return self.cached_blocks / self.prompt_blocks if self.prompt_blocks else 0.0

    @property
    def mean_occupancy(self) -> float:
        return float(np.mean(self.occupancy)) if self.occupancy else 0.0

    def to_dict(self) -> dict:
        return {"steps": self.steps, "decode_steps": self.decode_steps, "prefills": self.prefills,
                "mean_occupancy": self.mean_occupancy, "prompt_blocks": self.prompt_blocks,
                "cached_blocks": self.cached_blocks, "hit_rate": self.hit_rate,
                "prefill_tokens": self.prefill_tokens, "cached_tokens": self.cached_tokens,
                "generated_tokens": self.generated_tokens}


def serve(c, w, requests, num_slots=4, num_blocks=64, block_size=4, prefix_caching=True,
          ops=None):
    """Continuous batching over a paged KV cache. Each step:

      1. admit: waiting requests that have arrived, first come first served, while a slot
         is free and the free blocks cover every running request's remaining need plus this
         request's whole ceil((prompt + max_new_tokens) / block_size) blocks (so decode never
         runs out of blocks and nothing is preempted); an admitted request is prefilled at
         once (reusing cached prompt blocks) and samples its first token;
      2. decode: every running request that still has tokens to generate feeds its last
         token in one batched forward (paged attention over its own block table) and
         samples the next;
      3. finish: a request with max_new_tokens tokens frees its blocks (they stay cached
         for later prompts until evicted) and its slot.
    Returns (tokens of each request, in request order; ServeStats). Each request's tokens
    equal generate() on it alone: batching changes which rows share a forward, not what a
    row computes."""
    requests = [_checked_request(c, i, r) for i, r in enumerate(requests)]
    integer("num_slots", num_slots, low=1)
    integer("block_size", block_size, low=1)
    worst = max((-(-(len(r.prompt) + r.max_new_tokens) // block_size) for r in requests), default=0)
    integer("num_blocks", num_blocks, low=max(1, worst))
    cache = PagedModelCache(num_blocks, block_size, prefix_caching)
    stats = ServeStats()
    outputs = [[] for _ in requests]
    waiting = deque(sorted(range(len(requests)), key=lambda i: requests[i].arrival))
    running = []  # request ids holding a slot, admission order

    def need(i):
        return -(-(len(requests[i].prompt) + requests[i].max_new_tokens) // block_size)

    def choose(i, logits):
        r, t = requests[i], len(outputs[i])
        u = r.uniforms[t] if not r.sampling.greedy else 0.0
        outputs[i].append(int(next_tokens(logits[None], [u], r.sampling, ops)[0]))
        stats.generated_tokens += 1

    while waiting or running:
        while waiting and len(running) < num_slots and requests[waiting[0]].arrival <= stats.steps:
            i = waiting[0]
            reserved = sum(need(j) - len(cache.blocks.tables[j]) for j in running)
            if cache.blocks.allocator.num_free() - reserved < need(i):
                break
            waiting.popleft()
            prompt = requests[i].prompt
            cached = cache.arrive(i, prompt)
            stats.prompt_blocks += len(prompt) // block_size
            stats.cached_blocks += cache.hit_tokens[i] // block_size
            stats.cached_tokens += cached
            stats.prefill_tokens += len(prompt) - cached
            stats.prefills += 1
            choose(i, cache.prefill(c, w, i, prompt, cached, ops)[0, -1])
            running.append(i)
        active = [i for i in running if len(outputs[i]) < requests[i].max_new_tokens]
        if active:
            stats.occupancy.append(len(running) / num_slots)
            logits = cache.decode(c, w, active, [outputs[i][-1] for i in active], ops)
            stats.decode_steps += 1
            for row, i in enumerate(active):
                choose(i, logits[row, 0])
        for i in [i for i in running if len(outputs[i]) == requests[i].max_new_tokens]:
            cache.free(i)
            running.remove(i)
        stats.steps += 1
    return outputs, stats


def _checked_request(c, index, r):
    if not isinstance(r, Request):
        raise InputError(f"requests: item {index} is a {type(r).__name__}, not a Request")
    prompt = int_array(f"requests[{index}].prompt", np.asarray(r.prompt, np.int64), ndim=1,
                       low=0, high=c.vocab_size)
    if prompt.size == 0:
        raise InputError(f"requests[{index}].prompt: needs at least one token")
    integer(f"requests[{index}].max_new_tokens", r.max_new_tokens, low=1)
    integer(f"requests[{index}].arrival", r.arrival, low=0)
    if prompt.size + r.max_new_tokens > c.max_position:
        raise InputError(f"requests[{index}].prompt: {prompt.size} + {r.max_new_tokens} new "
                         f"tokens exceed max_position_embeddings={c.max_position}")
    if not r.sampling.greedy and len(r.uniforms) < r.max_new_tokens:
        raise InputError(f"requests[{index}].uniforms: {len(r.uniforms)} for "
                         f"{r.max_new_tokens} sampled tokens")
    return Request(prompt.tolist(), int(r.max_new_tokens), r.sampling, list(r.uniforms),
                   int(r.arrival))
