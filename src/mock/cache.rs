//! The simulated prefix cache: chained block hashes, an HBM tier and an optional external tier
//! that both evict the least recently used block, and vLLM's prefix-cache counters.
//!
//! It follows vLLM V1's KV cache manager. A token sequence is split into full blocks of
//! `block_size` tokens, and a partial last block is never cached. Each block is named by a hash
//! of its parent block's hash and its own token ids, so a block only matches when everything
//! before it matches too. A lookup returns the longest run of cached blocks from the start of the
//! prompt, capped so that the last prompt token is never a hit: the engine must compute at least
//! one token to sample the next one from. The external tier is asked only for the blocks after
//! the HBM run, and its hits must continue that run.
//!
//! Hashes are 64-bit SipHash-1-3 with fixed keys (`std::hash::DefaultHasher::new()`), the same
//! within one build of the server. A collision would make an uncached block look cached; with
//! `n` cached blocks its probability is about n² / 2⁶⁵ (3·10⁻⁸ for 2²⁰ blocks), which the mock
//! accepts. vLLM itself defaults to SHA-256.
//!
//! NOTE: unlike vLLM, blocks of running requests are not pinned: the HBM tier can evict them
//! while the request still runs, and they do not count against the tier's capacity.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher, Hash, Hasher};

/// The identity of one full block: a hash of its parent's hash and its token ids.
pub type BlockHash = u64;

/// The parent hash of a sequence's first block.
const ROOT_PARENT: BlockHash = 0;

/// Hashes the full blocks of `tokens`, chaining each block to the one before it. `parent` is
/// the hash of the block that precedes `tokens`, or `None` when `tokens` starts a sequence.
/// Tokens after the last full block are ignored.
pub fn hash_blocks(tokens: &[u32], block_size: usize, parent: Option<BlockHash>) -> Vec<BlockHash> {
    let mut parent = parent.unwrap_or(ROOT_PARENT);
    tokens
        .chunks_exact(block_size)
        .map(|block| {
            let mut hasher = DefaultHasher::new();
            parent.hash(&mut hasher);
            block.hash(&mut hasher);
            parent = hasher.finish();
            parent
        })
        .collect()
}

/// Prefix-cache counters in tokens, under vLLM V1's metric meanings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheCounters {
    /// Prompt tokens looked up (`vllm:prefix_cache_queries_total`).
    pub queries: u64,
    /// Prompt tokens found in the HBM tier (`vllm:prefix_cache_hits_total`).
    pub hits: u64,
    /// Prompt tokens left for the external tier after the HBM run; counted only while the
    /// external tier is enabled (`vllm:external_prefix_cache_queries_total`).
    pub external_queries: u64,
    /// Prompt tokens found in the external tier (`vllm:external_prefix_cache_hits_total`).
    pub external_hits: u64,
}

/// The result of one lookup: how many leading blocks each tier supplied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheHit {
    pub hbm_blocks: usize,
    pub external_blocks: usize,
}

impl CacheHit {
    /// Returns the number of leading prompt blocks served from either tier.
    pub fn blocks(&self) -> usize {
        self.hbm_blocks + self.external_blocks
    }
}

/// A two-tier prefix cache with LRU eviction in each tier.
#[derive(Debug)]
pub struct PrefixCache {
    block_size: usize,
    enabled: bool,
    hbm: LruBlocks,
    external: Option<LruBlocks>,
    counters: CacheCounters,
}

impl PrefixCache {
    /// Creates an empty cache. `external_blocks == 0` disables the external tier; `enabled ==
    /// false` turns caching off while lookups still count queries.
    pub fn new(
        block_size: usize,
        hbm_blocks: usize,
        external_blocks: usize,
        enabled: bool,
    ) -> Self {
        assert!(block_size > 0, "block size must be positive");
        Self {
            block_size,
            enabled,
            hbm: LruBlocks::new(hbm_blocks),
            external: (external_blocks > 0).then(|| LruBlocks::new(external_blocks)),
            counters: CacheCounters::default(),
        }
    }

    /// Looks up a prompt of `prompt_len` tokens whose full blocks hash to `hashes`, counts the
    /// query and its hits, and marks the hit blocks as recently used.
    pub fn lookup(&mut self, hashes: &[BlockHash], prompt_len: usize) -> CacheHit {
        let max_hit_blocks = (prompt_len.saturating_sub(1) / self.block_size).min(hashes.len());
        let candidates = &hashes[..max_hit_blocks];

        let mut hit = CacheHit::default();
        if self.enabled {
            hit.hbm_blocks = self.hbm.touch_run(candidates);
            if let Some(external) = &mut self.external {
                hit.external_blocks = external.touch_run(&candidates[hit.hbm_blocks..]);
            }
        }

        let hbm_hit_tokens = (hit.hbm_blocks * self.block_size) as u64;
        self.counters.queries += prompt_len as u64;
        self.counters.hits += hbm_hit_tokens;
        if self.external.is_some() {
            self.counters.external_queries += prompt_len as u64 - hbm_hit_tokens;
            self.counters.external_hits += (hit.external_blocks * self.block_size) as u64;
        }
        hit
    }

    /// Inserts the blocks of one sequence into the HBM tier, marking them as recently used, and
    /// copies blocks it evicts into the external tier. `hashes[computed_from..]` are blocks the
    /// engine computed rather than loaded from a tier, and the external tier stores them too.
    ///
    /// Blocks are touched from the last to the first, so the sequence's first block becomes the
    /// most recently used and its tail is evicted first, as vLLM frees a request's blocks in
    /// reverse order. Evicting a head block first would strand every block after it.
    pub fn insert(&mut self, hashes: &[BlockHash], computed_from: usize) {
        if !self.enabled {
            return;
        }
        for &hash in hashes.iter().rev() {
            let evicted = self.hbm.insert(hash);
            if let (Some(evicted), Some(external)) = (evicted, &mut self.external) {
                external.insert(evicted);
            }
        }
        if let Some(external) = &mut self.external {
            for &hash in hashes[computed_from.min(hashes.len())..].iter().rev() {
                external.insert(hash);
            }
        }
    }

    pub fn counters(&self) -> CacheCounters {
        self.counters
    }

    /// Returns the number of blocks the HBM tier holds.
    pub fn hbm_len(&self) -> usize {
        self.hbm.len()
    }

    /// Returns the number of blocks the external tier holds (0 when it is disabled).
    pub fn external_len(&self) -> usize {
        self.external.as_ref().map_or(0, LruBlocks::len)
    }
}

/// A set of block hashes with a fixed capacity that evicts the least recently used block.
///
/// Recency is a doubly linked list threaded through `nodes`, from `head` (most recently used)
/// to `tail` (next to evict), and `index` maps a hash to its node, so every operation is O(1).
/// A full tier reuses the evicted block's node for the new block, and nodes of removed blocks
/// wait in `free_nodes` for reuse.
#[derive(Debug)]
pub(super) struct LruBlocks {
    capacity: usize,
    index: HashMap<BlockHash, usize, BuildHasherDefault<BlockHashHasher>>,
    nodes: Vec<Node>,
    free_nodes: Vec<usize>,
    head: usize,
    tail: usize,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    hash: BlockHash,
    prev: usize,
    next: usize,
}

/// The end of the recency list.
const NIL: usize = usize::MAX;

impl LruBlocks {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            index: HashMap::default(),
            nodes: Vec::new(),
            free_nodes: Vec::new(),
            head: NIL,
            tail: NIL,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    pub(super) fn contains(&self, hash: BlockHash) -> bool {
        self.index.contains_key(&hash)
    }

    /// Removes `hash` if present and returns whether it was.
    pub(super) fn remove(&mut self, hash: BlockHash) -> bool {
        let Some(node) = self.index.remove(&hash) else {
            return false;
        };
        self.unlink(node);
        self.free_nodes.push(node);
        true
    }

    /// Removes and returns the least recently used block.
    pub(super) fn pop_least_recent(&mut self) -> Option<BlockHash> {
        if self.tail == NIL {
            return None;
        }
        let hash = self.nodes[self.tail].hash;
        self.remove(hash);
        Some(hash)
    }

    /// Counts the leading blocks of `hashes` that are present and marks them as recently used,
    /// the first block last so that it ends up the most recently used.
    pub(super) fn touch_run(&mut self, hashes: &[BlockHash]) -> usize {
        let run = hashes
            .iter()
            .take_while(|hash| self.index.contains_key(hash))
            .count();
        for &hash in hashes[..run].iter().rev() {
            self.insert(hash);
        }
        run
    }

    /// Marks `hash` as the most recently used block, adding it if absent. Returns the block
    /// evicted to make room, if any. With capacity 0 nothing is stored.
    pub(super) fn insert(&mut self, hash: BlockHash) -> Option<BlockHash> {
        if self.capacity == 0 {
            return None;
        }
        if let Some(&node) = self.index.get(&hash) {
            self.unlink(node);
            self.push_front(node);
            return None;
        }
        if let Some(node) = self.free_nodes.pop() {
            self.nodes[node].hash = hash;
            self.index.insert(hash, node);
            self.push_front(node);
            return None;
        }
        if self.nodes.len() < self.capacity {
            let node = self.nodes.len();
            self.nodes.push(Node {
                hash,
                prev: NIL,
                next: NIL,
            });
            self.index.insert(hash, node);
            self.push_front(node);
            return None;
        }
        let node = self.tail;
        let evicted = self.nodes[node].hash;
        self.unlink(node);
        self.index.remove(&evicted);
        self.nodes[node].hash = hash;
        self.index.insert(hash, node);
        self.push_front(node);
        Some(evicted)
    }

    fn unlink(&mut self, node: usize) {
        let Node { prev, next, .. } = self.nodes[node];
        match prev {
            NIL => self.head = next,
            prev => self.nodes[prev].next = next,
        }
        match next {
            NIL => self.tail = prev,
            next => self.nodes[next].prev = prev,
        }
    }

    fn push_front(&mut self, node: usize) {
        self.nodes[node].prev = NIL;
        self.nodes[node].next = self.head;
        match self.head {
            NIL => self.tail = node,
            head => self.nodes[head].prev = node,
        }
        self.head = node;
    }
}

/// A `Hasher` for `HashMap`s keyed by block hashes: the keys are already SipHash outputs, so
/// hashing them again would only cost time.
#[derive(Debug, Default)]
struct BlockHashHasher(u64);

impl Hasher for BlockHashHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCK: usize = 4;

    /// Returns `blocks` full blocks of consecutive token ids, starting at `first`.
    fn tokens(first: u32, blocks: usize) -> Vec<u32> {
        (first..first + (blocks * BLOCK) as u32).collect()
    }

    #[test]
    fn hash_chains_parent() {
        let shared = tokens(100, 1);
        let mut first = tokens(0, 1);
        first.extend(&shared);
        let mut second = tokens(50, 1);
        second.extend(&shared);

        let first = hash_blocks(&first, BLOCK, None);
        let second = hash_blocks(&second, BLOCK, None);
        assert_ne!(first[1], second[1], "same tokens under different parents");
    }

    #[test]
    fn hash_continues_from_parent() {
        let sequence = tokens(0, 3);
        let whole = hash_blocks(&sequence, BLOCK, None);
        let head = hash_blocks(&sequence[..BLOCK], BLOCK, None);
        let tail = hash_blocks(&sequence[BLOCK..], BLOCK, Some(head[0]));
        assert_eq!(whole[1..], tail[..]);
    }

    #[test]
    fn hash_ignores_partial_block() {
        let hashes = hash_blocks(&tokens(0, 2)[..2 * BLOCK - 1], BLOCK, None);
        assert_eq!(hashes.len(), 1);
    }

    #[test]
    fn lookup_takes_longest_cached_run() {
        let mut cache = PrefixCache::new(BLOCK, 64, 0, true);
        let cached = tokens(0, 3);
        cache.insert(&hash_blocks(&cached, BLOCK, None), 0);

        // Shares the first two blocks, then diverges; its fourth block equals nothing cached.
        let mut prompt = tokens(0, 2);
        prompt.extend(tokens(500, 2));
        prompt.push(1);
        let hit = cache.lookup(&hash_blocks(&prompt, BLOCK, None), prompt.len());
        assert_eq!(hit.hbm_blocks, 2);
    }

    #[test]
    fn lookup_stops_at_first_miss() {
        let mut cache = PrefixCache::new(BLOCK, 64, 0, true);
        let prompt = tokens(0, 3);
        let hashes = hash_blocks(&prompt, BLOCK, None);
        // Only the second and third blocks are cached, so the run from the start is empty.
        cache.insert(&hashes[1..], 0);
        let hit = cache.lookup(&hashes, prompt.len() + 1);
        assert_eq!(hit.hbm_blocks, 0);
    }

    #[test]
    fn lookup_never_hits_last_token() {
        let mut cache = PrefixCache::new(16, 64, 0, true);
        let prompt: Vec<u32> = (0..32).collect();
        let hashes = hash_blocks(&prompt, 16, None);
        cache.insert(&hashes, 0);

        let hit = cache.lookup(&hashes, prompt.len());
        assert_eq!(
            hit.hbm_blocks, 1,
            "a 32-token prompt hits 16 tokens, not 32"
        );
        assert_eq!(cache.counters().hits, 16);
    }

    #[test]
    fn lookup_counts_tokens() {
        let mut cache = PrefixCache::new(BLOCK, 64, 0, true);
        let prompt = tokens(0, 3);
        let hashes = hash_blocks(&prompt, BLOCK, None);
        cache.lookup(&hashes, prompt.len());
        cache.insert(&hashes, 0);
        cache.lookup(&hashes, prompt.len());

        let counters = cache.counters();
        assert_eq!(counters.queries, 2 * prompt.len() as u64);
        assert_eq!(counters.hits, 2 * BLOCK as u64);
        assert_eq!(counters.external_queries, 0, "external tier disabled");
        assert_eq!(counters.external_hits, 0);
    }

    #[test]
    fn disabled_cache_counts_queries_only() {
        let mut cache = PrefixCache::new(BLOCK, 64, 0, false);
        let prompt = tokens(0, 3);
        let hashes = hash_blocks(&prompt, BLOCK, None);
        cache.insert(&hashes, 0);
        let hit = cache.lookup(&hashes, prompt.len());

        assert_eq!(hit, CacheHit::default());
        assert_eq!(cache.hbm_len(), 0);
        assert_eq!(cache.counters().queries, prompt.len() as u64);
        assert_eq!(cache.counters().hits, 0);
    }

    #[test]
    fn lru_evicts_least_recently_used_sequence() {
        let mut cache = PrefixCache::new(BLOCK, 4, 0, true);
        let [a, b, c] = [0, 100, 200].map(|first| tokens(first, 2));
        let [a_hashes, b_hashes, c_hashes] = [&a, &b, &c].map(|t| hash_blocks(t, BLOCK, None));
        cache.insert(&a_hashes, 0);
        cache.insert(&b_hashes, 0);
        // Using `a` again leaves `b` as the least recently used sequence.
        cache.lookup(&a_hashes, a.len() + 1);
        cache.insert(&c_hashes, 0);

        assert_eq!(cache.hbm_len(), 4);
        assert_eq!(cache.lookup(&a_hashes, a.len() + 1).hbm_blocks, 2, "a kept");
        assert_eq!(
            cache.lookup(&b_hashes, b.len() + 1).hbm_blocks,
            0,
            "b evicted"
        );
        assert_eq!(cache.lookup(&c_hashes, c.len() + 1).hbm_blocks, 2, "c kept");
    }

    #[test]
    fn lru_evicts_tail_blocks_first() {
        let mut cache = PrefixCache::new(BLOCK, 2, 0, true);
        let prompt = tokens(0, 3);
        let hashes = hash_blocks(&prompt, BLOCK, None);
        cache.insert(&hashes, 0);

        assert_eq!(cache.hbm_len(), 2);
        assert_eq!(cache.lookup(&hashes, prompt.len() + 1).hbm_blocks, 2);
    }

    #[test]
    fn lru_evicts_in_order_of_last_use() {
        let mut lru = LruBlocks::new(3);
        for hash in [1, 2, 3] {
            lru.insert(hash);
        }
        lru.insert(1);
        let evicted: Vec<Option<BlockHash>> = [4, 5, 6].map(|hash| lru.insert(hash)).into();
        assert_eq!(evicted, [Some(2), Some(3), Some(1)]);
        assert_eq!(lru.len(), 3);
    }

    #[test]
    fn lru_with_zero_capacity_stores_nothing() {
        let mut cache = PrefixCache::new(BLOCK, 0, 0, true);
        let hashes = hash_blocks(&tokens(0, 2), BLOCK, None);
        cache.insert(&hashes, 0);
        assert_eq!(cache.hbm_len(), 0);
    }

    #[test]
    fn external_tier_stores_evicted_blocks() {
        let mut cache = PrefixCache::new(BLOCK, 2, 8, true);
        let first = hash_blocks(&tokens(0, 2), BLOCK, None);
        let second = hash_blocks(&tokens(100, 2), BLOCK, None);
        // `first` was loaded rather than computed, so only eviction can put it in the tier.
        cache.insert(&first, first.len());
        cache.insert(&second, second.len());
        assert_eq!(cache.external_len(), 2);

        let hit = cache.lookup(&first, 2 * BLOCK + 1);
        assert_eq!(hit.hbm_blocks, 0);
        assert_eq!(hit.external_blocks, 2);
    }

    #[test]
    fn external_tier_stores_computed_blocks() {
        let mut cache = PrefixCache::new(BLOCK, 64, 8, true);
        let hashes = hash_blocks(&tokens(0, 3), BLOCK, None);
        cache.insert(&hashes, 1);
        assert_eq!(cache.external_len(), 2);
    }

    #[test]
    fn external_tier_continues_hbm_run() {
        let mut cache = PrefixCache::new(BLOCK, 2, 8, true);
        let mut prompt = tokens(0, 4);
        let hashes = hash_blocks(&prompt, BLOCK, None);
        // HBM keeps the first two blocks; all four were computed, so the external tier has all.
        cache.insert(&hashes, 0);
        prompt.push(1);

        let hit = cache.lookup(&hashes, prompt.len());
        assert_eq!(hit.hbm_blocks, 2);
        assert_eq!(
            hit.external_blocks, 2,
            "asked only for the blocks HBM missed"
        );
    }

    #[test]
    fn external_tier_counts_hbm_misses() {
        let mut cache = PrefixCache::new(BLOCK, 2, 8, true);
        let mut prompt = tokens(0, 4);
        let hashes = hash_blocks(&prompt, BLOCK, None);
        cache.insert(&hashes, 0);
        prompt.push(1);
        cache.lookup(&hashes, prompt.len());

        let counters = cache.counters();
        let len = prompt.len() as u64;
        let block = BLOCK as u64;
        assert_eq!(counters.queries, len);
        assert_eq!(counters.hits, 2 * block);
        assert_eq!(counters.external_queries, len - 2 * block);
        assert_eq!(counters.external_hits, 2 * block);
    }

    #[test]
    fn external_hits_respect_last_token_cap() {
        // Without an HBM tier, both computed blocks live only in the external tier.
        let mut cache = PrefixCache::new(BLOCK, 0, 8, true);
        let prompt = tokens(0, 2);
        let hashes = hash_blocks(&prompt, BLOCK, None);
        cache.insert(&hashes, 0);

        let hit = cache.lookup(&hashes, prompt.len());
        assert_eq!(hit.external_blocks, 1);
    }
}
