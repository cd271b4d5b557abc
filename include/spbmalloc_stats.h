/*
 * spbmalloc_stats.h — the layout of the shared-memory stats segment,
 * /dev/shm/spbmalloc.<pid>, that every process running spbmalloc publishes
 * and spbstat reads. Public and versioned: a reader checks the magic and
 * SPB_STATS_VERSION before it trusts any other field, and refuses a layout
 * it does not know.
 *
 * File layout (all offsets and sizes are declared in the header, and a
 * reader checks each against total_size):
 *
 *   struct spb_stats_header            at 0, written once at creation
 *   char names[nr_counters][32]        at names_off: counter names (NUL
 *                                      terminated), from spbmalloc_counters.def
 *   --- the snapshot, rewritten under the seqlock `seq` ---
 *   struct spb_stats_gauges            at gauges_off
 *   uint64_t counters[nr_counters]     at counters_off
 *   struct spb_stats_spb[max_spbs]     at spbs_off (records in use:
 *                                      gauges.nr_spbs_mapped)
 *
 * The seqlock: the writer makes seq odd, writes the snapshot, makes it even
 * again. A reader copies the snapshot between two loads of seq and retries
 * while seq was odd or changed. A seq that stays odd means the writer died
 * in the middle of an update.
 *
 * The segment is created with O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600, and
 * removed at normal exit. SPBMALLOC_STATSEG=0 turns it off.
 */
#ifndef SPBMALLOC_STATS_H
#define SPBMALLOC_STATS_H

#include <stdint.h>

#define SPB_STATS_MAGIC 0x544154534d425053ull /* the bytes "SPBMSTAT" */
#define SPB_STATS_VERSION 2u /* 2: the control slot in the header */
#define SPB_STATS_PATH_PREFIX "/dev/shm/spbmalloc."
#define SPB_STATS_NAME_LEN 32
#define SPB_STATS_PB_PER_SPB 512

/* Pageblock tags in spb_stats_spb.pb_cls: a lifetime class (spb_class_t,
 * 0..nr_classes-1) or one of these. */
#define SPB_STATS_PB_FREE 0xffu
#define SPB_STATS_PB_BUSY 0xfeu /* being released to the OS */

/* Rows of the by-class arrays: the classes, then FREE, then BUSY. */
#define SPB_STATS_NR_CLASSES 4
#define SPB_STATS_ROW_FREE SPB_STATS_NR_CLASSES
#define SPB_STATS_ROW_BUSY (SPB_STATS_NR_CLASSES + 1)
#define SPB_STATS_NR_ROWS (SPB_STATS_NR_CLASSES + 2)
/* Backing rungs (the engine's enum spb_rung): none, hugetlb-1g,
 * hugetlb-2m, thp, 4k. */
#define SPB_STATS_NR_RUNGS 5
/* SPB categories: empty, clean, tainted; fullness buckets of 25%. */
#define SPB_STATS_NR_CATS 3
#define SPB_STATS_NR_FULLNESS 4

/* The control slot (spbstat --set/--get/--trim/--compact PID), in the
 * header. The segment is 0600: only its owner (or root) can write it.
 * A requester (spbstat) takes `lock` (0 -> its pid, by compare-and-swap;
 * the lock of a dead pid may be taken over), waits until ack_seq ==
 * req_seq (no earlier request still running: one given up on may be),
 * writes op, name, value, then
 * stores req_seq = ack_seq + 1 (release), then adds 1 to `wake` and wakes
 * it (FUTEX_WAKE, not private). The process's background thread sleeps on
 * `wake` and looks each round (at most a second apart, should a wake be
 * missed): it copies the slot, then
 * checks the copy (req_seq one past the last it answered, a NUL within
 * name, name of [a-z0-9._], a known op), runs spb_ctl, and answers:
 * result, status (0 or an errno), then ack_seq = req_seq (release). A
 * requester that gives up leaves its request (the process may have taken
 * it already; it may still run) and releases the lock. Nothing in the
 * slot is trusted by the process. */
#define SPB_STATS_CTL_NAME_LEN 64
enum spb_stats_ctl_op {
	SPB_STATS_CTL_GET = 1,  /* result: the value */
	SPB_STATS_CTL_SET = 2,  /* value: the new one; result: the old one */
	SPB_STATS_CTL_ACT = 3,  /* an action (trim, compact, ...); result: its result */
};
struct spb_stats_ctl {
	uint64_t req_seq;        /* requester, stored last */
	uint64_t ack_seq;        /* process, stored last */
	int32_t lock;            /* pid of the requester holding the slot, 0: free */
	uint32_t op;             /* enum spb_stats_ctl_op */
	int64_t value;           /* SET: the new value */
	int64_t result;          /* process: see the ops */
	int32_t status;          /* process: 0 or an errno */
	uint32_t wake;           /* a futex word: the background thread sleeps
				    on it; a requester adds 1 and FUTEX_WAKEs
				    it (shared) after storing req_seq */
	char name[SPB_STATS_CTL_NAME_LEN]; /* spb_ctl name, NUL terminated */
};

struct spb_stats_header {
	uint64_t magic;          /* SPB_STATS_MAGIC, stored last at creation */
	uint32_t version;        /* SPB_STATS_VERSION */
	uint32_t header_size;    /* sizeof(struct spb_stats_header) */
	uint64_t total_size;     /* bytes of the file */
	uint64_t seq;            /* seqlock over the snapshot: odd = writing */
	int32_t pid;             /* the writer */
	uint32_t uid;            /* its effective uid */
	uint64_t start_realtime_ns; /* CLOCK_REALTIME when the segment was made */
	uint64_t proc_starttime; /* /proc/<pid>/stat field 22: tells a reused
				    pid apart from the writer */
	uint32_t page_size;      /* 4096 */
	uint32_t pb_size;        /* 2 MiB */
	uint64_t spb_size;       /* 1 GiB */
	uint32_t rungs_enabled;  /* bit per rung the settings allow */
	uint32_t nr_counters;    /* entries in names[] and counters[] */
	uint32_t nr_classes;     /* SPB_STATS_NR_CLASSES */
	uint32_t nr_rungs;       /* SPB_STATS_NR_RUNGS */
	uint32_t pb_per_spb;     /* SPB_STATS_PB_PER_SPB */
	uint32_t max_spbs;       /* capacity of the SPB map */
	uint32_t names_off;
	uint32_t gauges_off;
	uint32_t counters_off;
	uint32_t spbs_off;
	uint32_t gauges_size;    /* sizeof(struct spb_stats_gauges) */
	uint32_t spb_rec_size;   /* sizeof(struct spb_stats_spb) */
	uint32_t publish_interval_ms; /* the background thread's period */
	uint32_t reserved0;
	uint64_t reserved[8];
	struct spb_stats_ctl ctl; /* version 2: external control */
};

/* The topology the zones were built for (lib/topo.c): first read from
 * sysfs, then, once the background thread has run it, from hwloc. Node
 * memory and distances for the first SPB_STATS_TOPO_NODES nodes. */
#define SPB_STATS_TOPO_NODES 8
struct spb_stats_topo {
	uint32_t source;          /* 0 none, 1 sysfs, 2 hwloc */
	uint32_t synthetic;       /* hwloc read HWLOC_SYNTHETIC / HWLOC_XMLFILE */
	uint32_t nr_nodes;        /* NUMA nodes (highest number + 1) */
	uint32_t nr_packages;     /* 0: unknown (sysfs does not say) */
	uint32_t nr_cores;        /* 0: unknown */
	uint32_t nr_pus;          /* logical CPUs */
	int32_t mem_policy;       /* the process's get_mempolicy mode at start
				     (0 default, 1 preferred, 2 bind,
				     3 interleave, 4 local, ...; -1 unknown) */
	uint32_t cache_line;      /* bytes */
	uint64_t cache_l1d;       /* bytes, one instance (0: unknown) */
	uint64_t cache_l2;
	uint64_t cache_l3;
	uint64_t node_mem[SPB_STATS_TOPO_NODES];  /* bytes local to the node */
	uint8_t dist[SPB_STATS_TOPO_NODES][SPB_STATS_TOPO_NODES]; /* 0: unknown */
};

/* Everything in bytes unless the name says otherwise. */
struct spb_stats_gauges {
	uint64_t publish_count;    /* snapshots written so far */
	uint64_t publish_realtime_ns; /* CLOCK_REALTIME of this snapshot */
	uint64_t live_bytes;       /* malloc_alloc_bytes - malloc_free_bytes */
	uint64_t peak_live_bytes;  /* highest live_bytes seen by a snapshot */
	uint64_t reserved_bytes;   /* address space: SPBs + large mappings */
	uint64_t mapped_bytes;     /* pageblocks with memory behind them + large */
	uint64_t large_bytes;      /* dedicated mappings (objects over 1 GiB) */
	uint64_t rss_bytes;        /* /proc/self/smaps_rollup Rss */
	uint64_t anon_bytes;       /* ... Anonymous */
	uint64_t anon_huge_bytes;  /* ... AnonHugePages */
	uint64_t next_decay_ms;    /* ms until the next release is due (~0: none) */
	uint32_t huge_permille;    /* anon_huge_bytes * 1000 / anon_bytes */
	uint32_t nr_zones;
	uint32_t nr_spbs;          /* all SPBs (may exceed max_spbs) */
	uint32_t nr_spbs_mapped;   /* records in the SPB map */
	uint32_t tainted_free_pb;  /* free pageblocks in tainted SPBs */
	uint32_t tainted_reserve;  /* the reserve they are kept above */
	uint32_t spbs_by_cat[SPB_STATS_NR_CATS];
	uint32_t spbs_by_cat_full[SPB_STATS_NR_CATS][SPB_STATS_NR_FULLNESS];
	uint32_t pad0;
	uint64_t pb_by_class[SPB_STATS_NR_ROWS];  /* classes, FREE, BUSY */
	uint64_t pb_by_rung[SPB_STATS_NR_RUNGS];
	/* memory behind pageblocks (rung != none), by class row and rung */
	uint64_t bytes_by_class_rung[SPB_STATS_NR_ROWS][SPB_STATS_NR_RUNGS];
	uint64_t reserved[8];
	struct spb_stats_topo topo;
};

/* One SPB of the map. */
struct spb_stats_spb {
	uint64_t base;            /* address of its 1 GiB data area */
	uint32_t nr_used_pages;   /* 4 KiB pages handed out */
	uint16_t zone;
	uint16_t nr_free_pb;
	uint8_t category;         /* 0 empty, 1 clean, 2 tainted */
	uint8_t fullness;         /* bucket 0..3 of used pages */
	uint8_t rung;             /* SPB-level rung */
	uint8_t pad[5];
	uint8_t pb_cls[SPB_STATS_PB_PER_SPB];   /* class or FREE/BUSY */
	uint8_t pb_rung[SPB_STATS_PB_PER_SPB];  /* rung of each pageblock */
	uint16_t pb_used[SPB_STATS_PB_PER_SPB]; /* pages in use, 0..512 */
};

#endif
