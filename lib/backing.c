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
 * always a counter. Calls os.c only.
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
	p = spb__os_reserve_aligned(SPB_SPB_SIZE, SPB_SPB_SIZE);
	if (!p)
		return NULL;
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

uint8_t spb__backing_release_pb(void *pb, uint8_t rung, uint8_t spb_rung,
				uint64_t *counters)
{
	switch (rung) {
	case SPB_RUNG_HUGETLB_1G:
		/* Releasing 2 MiB of a 1 GiB page would need a split: keep it
		 * until the whole SPB empties and is unmapped. */
		counters[PB_RELEASE_SKIP_1G]++;
		return rung;
	case SPB_RUNG_HUGETLB_2M:
		/* Swap the hugetlb page for plain memory: the pool page goes
		 * back now, and the next claim tries the pool again. */
		if (!spb__os_remap_plain_at(pb, SPB_PB_SIZE)) {
			counters[PB_RELEASE_FAIL]++;
			return rung;
		}
		/* The fresh mapping lost the SPB's MADV_HUGEPAGE. If the kernel
		 * refuses it again, the next claim advises once more. */
		if (spb_rung == SPB_RUNG_THP && !spb__os_advise_hugepage(pb, SPB_PB_SIZE))
			counters[THP_ADVISE_FAIL]++;
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
	return spb__os_unmap(base, SPB_SPB_SIZE);
}
