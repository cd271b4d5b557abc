/*
 * backing.c — the huge-page backing ladder.
 *
 * Per SPB, best first, each rung falling back when the kernel says no:
 *   1. one 1 GiB hugetlb page (SPBMALLOC_HUGETLB_1G=1 and a pool);
 *   2. a 2 MiB hugetlb page per pageblock (SPBMALLOC_HUGETLB_2M=1 and a pool),
 *      decided when the pageblock is claimed;
 *   3. THP: MADV_HUGEPAGE on the data area (the default; THP "madvise"
 *      mode is what distributions ship), so first touch of a pageblock
 *      faults a 2 MiB page;
 *   4. plain 4 KiB pages.
 * A hugetlb pool is never touched unless the user enabled it. Memory goes
 * back in whole pageblocks, so a 2 MiB page is never split. A refusal of
 * the kernel is a step down the ladder, or a release kept for later, and
 * always a counter. A SECRET pageblock leaves the ladder: memfd_secret (or
 * mlocked anonymous memory) mapped over it while it is secret, plain
 * memory again, wiped first, when it goes back. Calls os.c only.
 */
#include "engine.h"

const char *const spb__rung_names[SPB_NR_RUNGS] = {
	[SPB_RUNG_NONE] = "none",       [SPB_RUNG_HUGETLB_1G] = "hugetlb-1g",
	[SPB_RUNG_HUGETLB_2M] = "hugetlb-2m", [SPB_RUNG_THP] = "thp",
	[SPB_RUNG_4K] = "4k",
};

void *spb__backing_reserve_spb(uint8_t *rung, uint64_t *counters)
{
	void *p;
	if (spb__opt(OPT_HUGETLB_1G)) {
		p = spb__os_map_hugetlb_1g();
		if (p && ((uintptr_t)p & (SPB_SPB_SIZE - 1)) == 0) {
			*rung = SPB_RUNG_HUGETLB_1G;
			counters[SPB_BACK_HUGETLB_1G]++;
			return p;
		}
		if (p) /* cannot happen with a real 1 GiB page; be safe */
			spb__os_unmap(p, SPB_SPB_SIZE);
		counters[SPB_BACK_1G_FALLBACK]++;
	}
	bool refused;
	p = spb__arena_take(&refused);
	if (p) {
		counters[SPB_ARENA]++;
	} else if (refused) {
		return NULL;
	} else {
		if (spb__hmask)
			counters[SPB_ARENA_FULL]++;
		p = spb__os_reserve_aligned(SPB_SPB_SIZE, SPB_SPB_SIZE);
		if (!p)
			return NULL;
	}
	*rung = SPB_RUNG_4K;
	if (spb__opt(OPT_THP)) {
		if (spb__os_advise_hugepage(p, SPB_SPB_SIZE))
			*rung = SPB_RUNG_THP;
		else
			counters[THP_ADVISE_FAIL]++;
	}
	return p;
}

uint8_t spb__backing_claim_pb(void *pb, uint8_t spb_rung, uint64_t *counters)
{
	if (spb_rung == SPB_RUNG_HUGETLB_1G)
		return SPB_RUNG_HUGETLB_1G;
	if (spb__opt(OPT_HUGETLB_2M)) {
		if (spb__os_map_hugetlb_2m_at(pb)) {
			counters[PB_BACK_HUGETLB_2M]++;
			return SPB_RUNG_HUGETLB_2M;
		}
		counters[PB_BACK_2M_FALLBACK]++;
		/* The pageblock may have been a hugetlb page once, released by a
		 * plain remap whose MADV_HUGEPAGE the kernel refused: advise it
		 * again (only on this path, which is taken only with the 2 MiB
		 * pool enabled) so the THP rung is never claimed falsely. */
		if (spb_rung == SPB_RUNG_THP && !spb__os_advise_hugepage(pb, SPB_PB_SIZE)) {
			counters[THP_ADVISE_FAIL]++;
			counters[PB_BACK_4K]++;
			return SPB_RUNG_4K;
		}
	}
	if (spb_rung == SPB_RUNG_THP) {
		counters[PB_BACK_THP]++;
		return SPB_RUNG_THP;
	}
	counters[PB_BACK_4K]++;
	return SPB_RUNG_4K;
}

bool spb__backing_plain_pb(void *pb, uint8_t spb_rung, uint64_t *counters)
{
	if (!spb__os_remap_plain_at(pb, SPB_PB_SIZE))
		return false;
	if (spb_rung == SPB_RUNG_THP && !spb__os_advise_hugepage(pb, SPB_PB_SIZE))
		counters[THP_ADVISE_FAIL]++;
	return true;
}

uint8_t spb__backing_secret_pb(void *pb, uint64_t *counters)
{
	if (spb__opt(OPT_SECRET_MEMFD)) {
		if (spb__os_secret_memfd_at(pb, SPB_PB_SIZE)) {
			counters[SECRET_PB_MEMFD]++;
			return SPB_SECRET_MEMFD;
		}
		counters[SECRET_MEMFD_FAIL]++;
	}
	if (spb__os_secret_anon_at(pb, SPB_PB_SIZE)) {
		counters[SECRET_PB_ANON]++;
		return SPB_SECRET_ANON;
	}
	counters[SECRET_FLIP_FAIL]++;
	return SPB_SECRET_NONE;
}

bool spb__backing_unsecret_pb(void *pb, uint8_t spb_rung, uint64_t *counters)
{
	/* Wiped by hand before the mapping goes (the kernel clears memfd_secret
	 * pages as they are freed, mlocked anonymous pages only when reused). */
	spb__os_secret_wipe(pb, SPB_PB_SIZE);
	if (!spb__backing_plain_pb(pb, spb_rung, counters))
		return false;
	counters[SECRET_UNFLIP]++;
	return true;
}

uint8_t spb__backing_release_pb(void *pb, uint8_t rung, uint8_t spb_rung, uint8_t secret,
				uint64_t *counters)
{
	if (secret) {
		if (!spb__backing_unsecret_pb(pb, spb_rung, counters)) {
			counters[PB_RELEASE_FAIL]++;
			return rung;
		}
		counters[PB_RELEASE]++;
		return SPB_RUNG_NONE;
	}
	switch (rung) {
	case SPB_RUNG_HUGETLB_1G:
		/* Releasing 2 MiB of a 1 GiB page would need a split: keep it
		 * until the whole SPB empties and is unmapped. */
		counters[PB_RELEASE_SKIP_1G]++;
		return rung;
	case SPB_RUNG_HUGETLB_2M:
		/* Swap the hugetlb page for plain memory: the pool page goes
		 * back now, and the next claim tries the pool again. */
		if (!spb__backing_plain_pb(pb, spb_rung, counters)) {
			counters[PB_RELEASE_FAIL]++;
			return rung;
		}
		break;
	default:
		if (!spb__os_dontneed(pb, SPB_PB_SIZE)) {
			counters[PB_RELEASE_FAIL]++;
			return rung;
		}
		break;
	}
	counters[PB_RELEASE]++;
	return SPB_RUNG_NONE;
}

bool spb__backing_unmap_spb(void *base, uint8_t rung)
{
	(void)rung; /* a hugetlb page goes back to the pool with the mapping */
	if (spb__arena_contains((uintptr_t)base))
		return spb__arena_give_back(base); /* stays readable (arena.c) */
	return spb__os_unmap(base, SPB_SPB_SIZE);
}
