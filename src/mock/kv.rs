//! The KV-cache block pool of the engine latency model: HBM blocks that running requests hold,
//! cached blocks that finished requests left behind, and the external tier.
//!
//! It follows vLLM V1's block pool. The HBM tier has `capacity` blocks. A block is in use while
//! a running request references it, and several requests can share one cached block. A cached
//! block that no request references stays cached but is free: the next allocation that finds no
//! never-used block evicts it, least recently freed first. A request frees its blocks from the
//! last to the first, so its tail is evicted before its head, as in vLLM. `kv_cache_usage`
//! counts only blocks in use, so evictable cached blocks count as free.
//!
//! The external tier stores every block the engine computes and every block evicted from HBM,
//! and evicts its own least recently used block when full.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use super::cache::{BlockHash, CacheCounters, CacheHit, LruBlocks};

/// The block pool of the engine model.
#[derive(Debug)]
pub(crate) struct KvCache {
    block_size: usize,
    capacity: usize,
    enabled: bool,
    /// Cached HBM blocks that running requests reference, with their reference counts.
    referenced: HashMap<BlockHash, u32>,
    /// Cached HBM blocks that no request references, least recently freed next to evict.
    evictable: LruBlocks,
    /// Blocks held by running requests that hold no cached content yet.
    uncached_in_use: usize,
    external: Option<LruBlocks>,
    counters: CacheCounters,
    evictions: u64,
}

/// The cache hits of a request just admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Admission {
    pub hit: CacheHit,
}

impl KvCache {
    pub(crate) fn new(
        block_size: usize,
        capacity: usize,
        external_blocks: usize,
        enabled: bool,
    ) -> Self {
        Self {
            block_size,
            capacity,
            enabled,
            referenced: HashMap::new(),
            evictable: LruBlocks::new(usize::MAX),
            uncached_in_use: 0,
            external: (external_blocks > 0).then(|| LruBlocks::new(external_blocks)),
            counters: CacheCounters::default(),
            evictions: 0,
        }
    }

    pub(crate) fn counters(&self) -> CacheCounters {
        self.counters
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Returns the number of blocks that running requests hold.
    pub(crate) fn blocks_in_use(&self) -> usize {
        self.referenced.len() + self.uncached_in_use
    }

    /// Returns the number of HBM blocks that hold cached content, referenced or evictable.
    pub(crate) fn cached_blocks(&self) -> usize {
        self.referenced.len() + self.evictable.len()
    }

    pub(crate) fn evictable_blocks(&self) -> usize {
        self.evictable.len()
    }

    pub(crate) fn external_len(&self) -> usize {
        self.external.as_ref().map_or(0, LruBlocks::len)
    }

    /// Returns the number of cached blocks evicted from HBM so far.
    pub(crate) fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Returns the blocks never used or evictable, which an allocation can take.
    fn allocatable(&self) -> usize {
        self.capacity.saturating_sub(self.blocks_in_use())
    }

    /// Admits a request of `prompt_len` tokens whose full blocks hash to `hashes` and that needs
    /// `total_blocks` blocks in all, if the HBM tier has room. On success it counts the prefix
    /// cache query, references the HBM hit blocks, allocates the rest and returns the hit. On
    /// failure it changes nothing, so the request can wait and retry.
    pub(crate) fn admit(
        &mut self,
        hashes: &[BlockHash],
        prompt_len: usize,
        total_blocks: usize,
    ) -> Option<Admission> {
        let max_hit_blocks = (prompt_len.saturating_sub(1) / self.block_size).min(hashes.len());
        let candidates = &hashes[..max_hit_blocks];
        let hbm_blocks = if self.enabled {
            candidates
                .iter()
                .take_while(|&&hash| {
                    self.referenced.contains_key(&hash) || self.evictable.contains(hash)
                })
                .count()
        } else {
            0
        };
        let hbm_hits = &candidates[..hbm_blocks];
        let evictable_hits = hbm_hits
            .iter()
            .filter(|&&hash| self.evictable.contains(hash))
            .count();
        let new_blocks = total_blocks.saturating_sub(hbm_blocks);
        // Referencing an evictable hit takes it out of the allocatable blocks.
        if self.allocatable() < new_blocks + evictable_hits {
            return None;
        }

        for &hash in hbm_hits {
            self.reference(hash);
        }
        self.allocate(new_blocks);
        let external_blocks = match &mut self.external {
            Some(external) if self.enabled => external.touch_run(&candidates[hbm_blocks..]),
            _ => 0,
        };

        let hbm_hit_tokens = (hbm_blocks * self.block_size) as u64;
        self.counters.queries += prompt_len as u64;
        self.counters.hits += hbm_hit_tokens;
        if self.external.is_some() {
            self.counters.external_queries += prompt_len as u64 - hbm_hit_tokens;
            self.counters.external_hits += (external_blocks * self.block_size) as u64;
        }
        Some(Admission {
            hit: CacheHit {
                hbm_blocks,
                external_blocks,
            },
        })
    }

    /// Turns one of a request's uncached blocks into the cached block `hash`, now that its
    /// tokens are computed. If another request cached the same content meanwhile, the request
    /// shares that block and its own goes back to the pool. `computed` is false for a block
    /// loaded from the external tier, which that tier already stores.
    pub(crate) fn cache_block(&mut self, hash: BlockHash, computed: bool) {
        debug_assert!(
            self.uncached_in_use > 0,
            "a request caches a block it holds"
        );
        self.uncached_in_use -= 1;
        if self.enabled {
            self.reference(hash);
        } else {
            self.uncached_in_use += 1;
        }
        if computed
            && self.enabled
            && let Some(external) = &mut self.external
        {
            external.insert(hash);
        }
    }

    /// Releases a finished request's blocks: `cached` in sequence order and `uncached` blocks
    /// without content. Cached blocks that no other request references become evictable, the
    /// last block first so that it is evicted first.
    pub(crate) fn release(&mut self, cached: &[BlockHash], uncached: usize) {
        self.uncached_in_use -= uncached;
        if !self.enabled {
            self.uncached_in_use -= cached.len();
            return;
        }
        for &hash in cached.iter().rev() {
            let Entry::Occupied(mut entry) = self.referenced.entry(hash) else {
                debug_assert!(false, "released block {hash:x} is referenced");
                continue;
            };
            *entry.get_mut() -= 1;
            if *entry.get() == 0 {
                entry.remove();
                self.evictable.insert(hash);
            }
        }
    }

    /// Adds a reference to the cached block `hash`, taking it out of the evictable blocks.
    fn reference(&mut self, hash: BlockHash) {
        if let Some(count) = self.referenced.get_mut(&hash) {
            *count += 1;
            return;
        }
        self.evictable.remove(hash);
        self.referenced.insert(hash, 1);
    }

    /// Takes `blocks` uncached blocks, evicting cached blocks when no never-used block is left.
    /// The caller has checked that enough blocks are allocatable.
    fn allocate(&mut self, blocks: usize) {
        let never_used = self
            .capacity
            .saturating_sub(self.blocks_in_use() + self.evictable.len());
        for _ in never_used..blocks {
            let Some(evicted) = self.evictable.pop_least_recent() else {
                break;
            };
            self.evictions += 1;
            if let Some(external) = &mut self.external {
                external.insert(evicted);
            }
        }
        self.uncached_in_use += blocks;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mock::cache::hash_blocks;

    const BLOCK: usize = 4;

    fn sequence(first: u32, blocks: usize) -> (Vec<u32>, Vec<BlockHash>) {
        let tokens: Vec<u32> = (first..first + (blocks * BLOCK) as u32).collect();
        let hashes = hash_blocks(&tokens, BLOCK, None);
        (tokens, hashes)
    }

    /// Admits a request for `hashes` plus one token, computes and caches its blocks and
    /// finishes it.
    fn run_request(kv: &mut KvCache, hashes: &[BlockHash]) -> Admission {
        let prompt_len = hashes.len() * BLOCK + 1;
        let total = prompt_len.div_ceil(BLOCK);
        let admission = kv.admit(hashes, prompt_len, total).expect("fits");
        for &hash in &hashes[admission.hit.hbm_blocks..] {
            kv.cache_block(hash, true);
        }
        kv.release(hashes, total - hashes.len());
        admission
    }

    #[test]
    fn finished_request_leaves_evictable_blocks() {
        let mut kv = KvCache::new(BLOCK, 8, 0, true);
        let (_, hashes) = sequence(0, 3);
        run_request(&mut kv, &hashes);
        assert_eq!(kv.blocks_in_use(), 0);
        assert_eq!(kv.cached_blocks(), 3);
        assert_eq!(run_request(&mut kv, &hashes).hit.hbm_blocks, 3);
        assert_eq!(kv.counters().hits, 3 * BLOCK as u64);
    }

    #[test]
    fn request_that_does_not_fit_changes_nothing() {
        let mut kv = KvCache::new(BLOCK, 4, 0, true);
        let (_, hashes) = sequence(0, 2);
        assert!(kv.admit(&hashes, 9, 3).is_some());
        assert!(
            kv.admit(&hashes, 9, 3).is_none(),
            "1 block left, 1 shared + 2 new needed"
        );
        assert_eq!(kv.blocks_in_use(), 3);
        assert_eq!(
            kv.counters().queries,
            9,
            "a rejected admission is not a query"
        );
    }

    #[test]
    fn shared_blocks_count_once() {
        let mut kv = KvCache::new(BLOCK, 8, 0, true);
        let (_, hashes) = sequence(0, 2);
        run_request(&mut kv, &hashes);
        kv.admit(&hashes, 9, 3).unwrap();
        kv.admit(&hashes, 9, 3).unwrap();
        assert_eq!(kv.blocks_in_use(), 2 + 1 + 1);
    }

    #[test]
    fn eviction_takes_tail_of_least_recent_first() {
        let mut kv = KvCache::new(BLOCK, 4, 0, true);
        let (_, first) = sequence(0, 2);
        let (_, second) = sequence(100, 2);
        run_request(&mut kv, &first);
        // `second` needs 3 blocks and 2 were never used, so `first`'s tail block is evicted.
        run_request(&mut kv, &second);
        assert_eq!(kv.evictions(), 1);
        assert_eq!(kv.cached_blocks(), 3);
        let admission = kv.admit(&first, 9, 3).unwrap();
        assert_eq!(admission.hit.hbm_blocks, 1, "first's head block survived");
    }

    #[test]
    fn evicted_blocks_go_to_external_tier() {
        let mut kv = KvCache::new(BLOCK, 2, 16, true);
        let (_, first) = sequence(0, 2);
        let (_, second) = sequence(100, 2);
        run_request(&mut kv, &first[..1]);
        run_request(&mut kv, &second[..1]);
        let admission = kv.admit(&first[..1], 5, 2).unwrap();
        assert_eq!(admission.hit.hbm_blocks, 0);
        assert_eq!(admission.hit.external_blocks, 1);
    }

    #[test]
    fn disabled_cache_holds_blocks_without_caching() {
        let mut kv = KvCache::new(BLOCK, 8, 0, false);
        let (_, hashes) = sequence(0, 2);
        run_request(&mut kv, &hashes);
        assert_eq!(kv.blocks_in_use(), 0);
        assert_eq!(kv.cached_blocks(), 0);
        assert_eq!(run_request(&mut kv, &hashes).hit.hbm_blocks, 0);
    }
}
