/*
 * notify.pml — an exhaustive SPIN model of the full/notify protocol of
 * lib/heap.c (see the comment at its top), of the cross-thread free of
 * lib/free.c (free_xthread, xfree_note) and the owner's fast-path free,
 * and of lib/span.c (spb__span_collect, the pooled span descriptors). Run
 * by tests/model/run-model.sh (ctest model.*).
 *
 * What is modelled, one size class ("bin"), one zone and class:
 *   - NS span descriptors (2 or 3), pooled and reused (desc_alloc,
 *     desc_free_one): a descriptor is an index, so a remote freer that
 *     keeps an index after its flag holds a stale pointer exactly as the
 *     code does (the span may be released and reused by another heap);
 *   - 2 heap structs: owner A (heap 0) works then exits, retiring heap 0
 *     to the pool; owner C then reuses heap 0 (heap_init); owner B (heap 1)
 *     works throughout. An owner's actions: malloc (fast path, refill:
 *     drain_notify, span_ready with mark_full and the second look (a
 *     collect), the avail list, adopt, span_new), its own frees (fast
 *     path, then spb__heap_span_empty: mark_avail, free-to-empty-and-
 *     release) and, for A, thread exit (heap_release_spans:
 *     make_avail_for_exit, collect, release or abandon_span, the last
 *     drain; retire);
 *   - 2 remote freers: blocks an owner hands over. Each (free_xthread,
 *     xfree_note): (1) fetch_or of the block's bit into the span's xfreed
 *     bitmap word: the block is "flagged"; (2) load of s->xsum; (3) if the
 *     word's xsum bit was clear, fetch_or of it into s->xsum (else no
 *     store); (4) load of `full`, and if FULL the CAS FULL -> NOTIFIED,
 *     then s->heap read and the span pushed on that heap's xnotify list;
 *   - the collect (spb__span_collect), by the owner or (SWEEP) by the
 *     sweeper under aband_lock: (a) sum = exchange(&s->xsum, 0); if sum
 *     is not 0, (b) the look at the word (a relaxed load) and, if not 0,
 *     (c) exchange(word, 0): those blocks are free again (used -=
 *     popcount);
 *   - desc_alloc's reset of the bitmap (memset) and of xsum (a store): a
 *     late freer may still set the xsum bit of a reused descriptor (a
 *     spurious look for its new owner);
 *   - (SWEEP) the background thread's sweep of abandoned spans.
 * Every load, store, CAS, fetch_or and exchange of a shared word is one
 * step; what only the owner touches (its lists, bins[bin], `used`, the
 * free list) is local to its process and folded into the neighbouring
 * step (a lock-held region is one step, but for the sweeper's, whose
 * collect races the freers: aband_lock is then a ghost lock). The
 * interleaving is sequentially consistent: the code makes seq_cst the
 * accesses whose order the protocol needs (the flag, the load and
 * fetch_or of xsum and the load of full, against mark_full's CAS and the
 * collect's exchanges), but for the collect's look at the word (b), a
 * relaxed load, taken here as sequentially consistent too: C11 does not
 * order it after the exchange of xsum (a) against a freer's flag. The
 * bitmap is one word per span, so all of a
 * span's blocks share one xsum bit. Blocks are counts: u[s] (span->used:
 * handed out, flagged included), fl[s] (flagged in the xfreed word, not
 * collected), hold[s] (kept by the owner's program), out[s] (handed to
 * another thread, not flagged yet); xsum[s] is the span's xsum bit. Lists
 * are sets and are walked in any order, a superset of the orders the code
 * can take.
 *
 * Properties (assertions; SPIN also reports a deadlock as an invalid end
 * state, and an exit that waits forever trips a timeout assertion):
 *   (a) a span is pushed on an xnotify list only when it is on none and
 *       no drain holds it (a second push on the same list makes a cycle,
 *       on another corrupts both); desc_alloc resets no listed span;
 *   (b) a push lands only on a live heap, never a pooled one; heap_init's
 *       reset drops no pushed span; (invariant 3) a retired heap's list is
 *       empty;
 *   (c) drain_notify finds s->heap == h and the span NOTIFIED (the code's
 *       fatal check never fires); a notifier reads a non-NULL s->heap;
 *   (d) no lost wake-up, no block left behind: when every thread is
 *       done, (d1) a span with a flagged block has its xsum bit set, so
 *       the next collect of the span (its owner's, an adopter's, the
 *       sweeper's) takes the block: a block flagged with the bit clear
 *       and no freer left to set it is never collected; (d2) a span its
 *       owner saw FULL has no flagged block (nobody collects a FULL span
 *       until a notification: its freers had to see FULL and notify); a
 *       NOTIFIED one is on its owner's list, an AVAIL one on its avail
 *       list (the owner looks there again); desc_alloc's reset of the
 *       bitmap and xsum drops no block (nothing flagged at reuse);
 *   (e) a span is released or abandoned only AVAIL and on no xnotify list.
 *
 * Variants (cpp defines: `spin -DNAME -a notify.pml`):
 *   OLD_PLAIN_STORES  the code before the protocol was fixed (fd0945b):
 *                     abandon_span, adopt and desc_free_one store AVAIL
 *                     with plain stores, and thread exit does not wait for
 *                     NOTIFIED spans (no make_avail_for_exit, no last
 *                     drain). Must fail.
 *   CONSEQUENCES_ONLY leave out the checks of the invariants themselves
 *                     ((e) and the empty list at retirement), to see what
 *                     breaking them leads to: (a), (b), (c), (d).
 *   NO_SECOND_LOOK    span_ready without its second look (collect) after
 *                     mark_full. Must fail (d2).
 *   XSUM_LOAD_BEFORE_FLAG  the freer loads xsum before it flags its block
 *                     (steps (2) and (1) swapped): it sees the bit set, a
 *                     collect then takes the bit and the word, then the
 *                     flag lands with no bit to name it. Must fail (d1).
 *   XSUM_CLEAR_AFTER_WORD  the collect takes the word before it clears
 *                     xsum (a load of xsum, the word's exchange, then a
 *                     store of 0 to xsum): a freer that flags in between
 *                     sees the bit set and the store clears it. Must fail
 *                     (d1).
 *   FORK              owner A may fork(); the model follows the child, in
 *                     which every other thread is gone (provided clauses
 *                     freeze them; run pan with -E: the frozen threads
 *                     are not at end states). A notifier frozen between
 *                     its FULL -> NOTIFIED and its push leaves A's span
 *                     NOTIFIED for good: A's thread exit then waits
 *                     forever in make_avail_for_exit (the timeout assert).
 *   FORK_FIX          with FORK: the fix in the child's fork handler
 *                     (heap_fixup_child: drain, then any span of the
 *                     thread's heap still NOTIFIED lost its notifier, and
 *                     one FULL with its xsum bit set may have lost it:
 *                     AVAIL again, on the avail list).
 *   SWEEP             add the background sweep of abandoned spans.
 *   NS=2|3, CAP=n, OPS_A/OPS_B/OPS_C: the size of the model (owners stop
 *                     after up to OPS_x mallocs; OPS_B=0: B idle).
 */

#ifndef NS
#define NS 3 /* span descriptors */
#endif
#ifndef CAP
#define CAP 1 /* blocks per span */
#endif
#ifndef OPS_A
#define OPS_A 2 /* mallocs by owner A before it exits */
#endif
#ifndef OPS_B
#define OPS_B 2
#endif
#ifndef OPS_C
#define OPS_C 1
#endif

#define NH 2    /* heap structs */
#define NOS 255 /* no span */
#define NOH 255 /* no heap (NULL) */

/* span->full */
#define AVAIL 0
#define FULL 1
#define NOTIFIED 2

/* Where a descriptor is (ghost): */
#define L_POOL 0  /* the descriptor pool (released) */
#define L_NONE 1  /* in the hands of one function, on no list */
#define L_OWN 2   /* on its heap's lists (the owner's local my[]) */
#define L_ABAND 3 /* on the abandoned list */

/* my[s] in an owner: which of its heap's lists holds s */
#define M_NO 0
#define M_AVAIL 1
#define M_FULL 2

/* heap struct state (ghost) */
#define H_NEW 0
#define H_LIVE 1
#define H_POOL 2

#define BIT(i) (1 << (i))

/* Shared: the span descriptors (arrays sized 3; NS of them are used). */
byte sfull[3];  /* span->full */
byte sheap[3];  /* span->heap */
byte fl[3];     /* blocks flagged in the span's xfreed word, not collected */
bool xsum[3];   /* the word's bit in span->xsum */
byte aused[3];  /* span->used while abandoned (under aband_lock) */
byte lst[3];    /* ghost: L_* */
byte onl[3];    /* ghost: the heap whose xnotify holds the span (or whose
		   drain has it in hand), NOH if none */
byte out[3];    /* ghost: blocks handed to a remote freer, not pushed yet */

/* Shared: the heap structs. */
byte hst[NH];   /* ghost: H_* */
byte xn[NH];    /* heap->xnotify as a set of spans */

byte nfresh;    /* descriptors nfresh.. were never used */
byte ndone;     /* owners finished */
bool alk;       /* SWEEP: aband_lock, held by the sweeper across its collect */
bool forked;    /* FORK: owner A forked; we follow the child, where every
		   other thread is gone (their processes are frozen) */
chan blk = [2] of { byte }; /* blocks for the remote freers: span index */

#define MY_AVAIL(i) (my[i] == M_AVAIL)
#define MY_ANY(i) (my[i] != M_NO)
#define IS_ABAND(i) (lst[i] == L_ABAND)
/* A descriptor from the pool: any released one, or the first of those
 * never used (they are all alike: a symmetry reduction). */
#define IS_POOL(i) (lst[i] == L_POOL && i <= nfresh)
#define IN_TK(i) (tk & BIT(i))
#define HELD(i) (hold[i] > 0)
#define HELD_ANY (HELD(0) || HELD(1) || (NS > 2 && HELD(2)))

/* v := some span index i < NS with C(i) (any of them), else NOS. */
#define PICK(v, C) \
	if \
	:: C(0) -> v = 0 \
	:: C(1) -> v = 1 \
	:: (NS > 2) && C(2) -> v = 2 \
	:: else -> v = NOS \
	fi

/* spb__span_collect(s): sets got (blocks collected); cnt: the span's
 * used count (the owner's u[s], the sweeper's aused[s]). (a) sum =
 * exchange(&s->xsum, 0); if not 0, for the word it names: (b) a relaxed
 * look at the word, and if not 0 (c) x = exchange(word, 0): those blocks
 * go on the free list (used -= popcount). (a) and (c) are seq_cst. */
inline collect(s, cnt)
{
#ifndef XSUM_CLEAR_AFTER_WORD
	atomic { got = xsum[s]; xsum[s] = 0 } /* (a) */
#else
	got = xsum[s]; /* the variant: a load of xsum */
#endif
	if
	:: got ->
		if
		:: fl[s] == 0 -> got = 0 /* (b): nothing flagged */
		:: else -> /* (c) */
			atomic { got = fl[s]; cnt = cnt - got; fl[s] = 0 }
		fi
#ifdef XSUM_CLEAR_AFTER_WORD
		; xsum[s] = 0 /* the variant: xsum cleared after the word */
#endif
	:: else -> skip
	fi
}

/* drain_notify(h, relink) */
inline drain(relink)
{
	atomic { tk = xn[h]; xn[h] = 0 } /* exchange(&h->xnotify, NULL) */
	do
	:: tk == 0 -> break
	:: else ->
		PICK(t, IN_TK); /* in any order: a superset of the list's */
		/* next = t->notify_next; load t->heap; full_cas(t, NOTIFIED,
		 * AVAIL): (c) the code's fatal check (one step: only the
		 * owner itself could change t->heap) */
		atomic {
			tk = tk & ~BIT(t);
			assert(onl[t] == h);
			onl[t] = NOH;
			assert(sheap[t] == h);
			assert(sfull[t] == NOTIFIED);
			sfull[t] = AVAIL;
			if
			:: relink -> my[t] = M_AVAIL
			:: else -> skip
			fi;
			t = 0
		}
	od
}

/* spb__span_release -> desc_free_one (n: the span's used count) */
inline release(s, n)
{
	atomic {
#ifndef CONSEQUENCES_ONLY
		assert(sfull[s] == AVAIL && onl[s] == NOH); /* (e) */
#endif
#ifdef OLD_PLAIN_STORES
		sfull[s] = AVAIL; /* old: __atomic_store_n(&s->full, AVAIL) */
#endif
		assert(n == 0 && fl[s] == 0 && out[s] == 0);
		sheap[s] = NOH;
		lst[s] = L_POOL
	}
}

/* abandon_span */
inline abandon(s)
{
	atomic {
#ifndef CONSEQUENCES_ONLY
		assert(sfull[s] == AVAIL && onl[s] == NOH); /* (e) */
#endif
		assert(hold[s] == 0 || forked); /* the child keeps them */
		lst[s] = L_NONE;
		sheap[s] = NOH
	}
#ifdef OLD_PLAIN_STORES
	sfull[s] = AVAIL; /* old: a plain store after the heap's */
#endif
	atomic { !alk -> lst[s] = L_ABAND; aused[s] = u[s]; u[s] = 0 } /* aband_lock */
}

/* span_ready(h, s): sets ok */
inline span_ready(s)
{
	collect(s, u[s]);
	ok = (u[s] < CAP); /* s->free, or extend */
	if
	:: !ok ->
		/* mark_full: move_to(full list); full_cas(AVAIL, FULL) */
		atomic {
			my[s] = M_FULL;
			if
			:: sfull[s] == AVAIL -> sfull[s] = FULL
			:: else -> skip
			fi
		}
#ifndef NO_SECOND_LOOK
		collect(s, u[s]); /* the second look */
		ok = (got > 0)
#endif
		if
		:: ok ->
			/* mark_avail: full_cas(FULL, AVAIL); move_to(avail) */
			atomic {
				if
				:: sfull[s] == FULL -> sfull[s] = AVAIL
				:: else -> skip
				fi;
				my[s] = M_AVAIL
			}
		:: else -> skip
		fi
	:: else -> skip
	fi;
	got = 0
}

/* spb__heap_refill: sets ok and s */
inline refill()
{
	drain(1);
	ok = 0;
	if
	:: cur != NOS -> s = cur; span_ready(s)
	:: else -> skip
	fi;
	/* the avail list, in any order */
	do
	:: ok -> break
	:: else ->
		PICK(s, MY_AVAIL);
		if
		:: s == NOS -> break
		:: else -> span_ready(s)
		fi
	od;
	/* adopt */
	do
	:: ok -> break
	:: else ->
		atomic { /* under aband_lock */
			!alk;
			PICK(s, IS_ABAND);
			if
			:: s != NOS -> lst[s] = L_NONE; u[s] = aused[s]; aused[s] = 0
			:: else -> skip
			fi
		}
		if
		:: s == NOS -> break
		:: else ->
#ifdef OLD_PLAIN_STORES
			sfull[s] = AVAIL; /* old: a plain store before the heap's */
#endif
			/* invariant (1): the heap changes while AVAIL */
			atomic {
				assert(sfull[s] == AVAIL);
				sheap[s] = h;
				lst[s] = L_OWN;
				my[s] = M_AVAIL
			}
			span_ready(s)
		fi
	od;
	/* spb__span_new */
	if
	:: ok -> skip
	:: else ->
		/* desc_alloc, under desc_lock: resets the bitmap, xsum and
		 * notify_next */
		atomic {
			PICK(s, IS_POOL);
			if
			:: s != NOS ->
				assert(fl[s] == 0 && out[s] == 0); /* (d) no block dropped */
				xsum[s] = 0;
				assert(onl[s] == NOH);             /* (a) */
				assert(sfull[s] == AVAIL);
				lst[s] = L_NONE;
				u[s] = 0;
				if
				:: s == nfresh -> nfresh++
				:: else -> skip
				fi
			:: else -> skip
			fi
		}
		if
		:: s != NOS ->
			/* s->heap = h; list_add_tail(avail); extend */
			atomic { sheap[s] = h; lst[s] = L_OWN; my[s] = M_AVAIL }
			ok = 1
		:: else -> skip /* out of descriptors: malloc fails */
		fi
	fi;
	if
	:: ok -> cur = s
	:: else -> skip
	fi
}

/* spb__heap_span_empty(h, s) */
inline span_empty(s)
{
	if
	:: sfull[s] == FULL -> /* load: FULL -> mark_avail */
		atomic {
			if
			:: sfull[s] == FULL -> sfull[s] = AVAIL
			:: else -> skip
			fi;
			my[s] = M_AVAIL
		}
	:: else -> skip
	fi;
	if
	:: u[s] != 0 || cur == s || sfull[s] == NOTIFIED -> skip
	:: else -> my[s] = M_NO; release(s, u[s])
	fi
}

/* make_avail_for_exit(h, s). The code spins (drain, sched_yield) while s
 * is NOTIFIED; here the loop blocks until the list is not empty, so a
 * push that never comes shows as a deadlock (an invalid end state). */
inline make_avail_for_exit(s)
{
	do
	:: atomic { sfull[s] == AVAIL -> break }
	:: atomic { sfull[s] == FULL -> sfull[s] = AVAIL; break } /* load; CAS */
	:: atomic { sfull[s] == NOTIFIED && xn[h] != 0 } -> drain(0)
	:: atomic { timeout -> assert(sfull[s] != NOTIFIED) } /* waits forever */
	od
}

/* spb__heap_thread_exit: heap_release_spans(h), heap_retire_locked */
inline thread_exit()
{
	/* The program hands the blocks it holds to other threads. */
	do
	:: PICK(s, HELD);
		if
		:: s == NOS -> break
		:: else -> atomic { nfull(blk) && !forked -> hold[s]--; out[s]++; blk!s }
		:: forked -> break /* no other thread in the child: they leak */
		fi
	od;
	drain(1);
	do
	:: PICK(s, MY_ANY); /* the avail and full lists, in any order */
		if
		:: s == NOS -> break
		:: else ->
			my[s] = M_NO; /* spb__list_del */
#ifndef OLD_PLAIN_STORES
			make_avail_for_exit(s);
#endif
			collect(s, u[s]);
			got = 0;
			if
			:: u[s] == 0 -> release(s, u[s])
			:: else -> abandon(s)
			fi
		fi
	od;
	cur = NOS;
#ifndef OLD_PLAIN_STORES
	drain(0); /* invariant (3) */
#endif
	atomic {
#ifndef CONSEQUENCES_ONLY
		assert(xn[h] == 0); /* invariant (3): a retired heap's list is empty */
#endif
		hst[h] = H_POOL
	}
}

/* FORK: after the fork only A (_pid 1) runs (provided clauses cost the
 * partial order reduction: only in that variant). */
#ifdef FORK
#define PROVIDED_OWNER provided (!forked || _pid == 1)
#define PROVIDED_OTHER provided (!forked)
#else
#define PROVIDED_OWNER
#define PROVIDED_OTHER
#endif

/* A thread with heap h: A (works, exits), B (works), C (reuses heap 0). */
proctype owner(byte h; byte nops; bool reuse; bool exits) PROVIDED_OWNER
{
	byte my[3]; /* M_*: which list of this heap holds the span */
	byte u[3];  /* span->used of this heap's spans */
	byte hold[3];
	byte cur = NOS; /* heap->bins[bin] */
	byte s, t, tk, got;
	bool ok;

	/* heap_new: a fresh heap, or one from the pool (heap_init) */
	atomic {
		if
		:: reuse -> hst[h] == H_POOL
		:: else -> hst[h] == H_NEW
		fi;
		assert(xn[h] == 0); /* (b) heap_init's reset drops no push */
		xn[h] = 0;
		hst[h] = H_LIVE
	}
	do
	:: nops > 0 ->
		/* malloc */
		nops--;
		if
		:: cur != NOS && u[cur] < CAP -> s = cur; ok = 1
		:: else -> refill()
		fi;
		if
		:: ok ->
			u[s]++;
			if
			:: atomic { nfull(blk) && !forked -> out[s]++; blk!s } /* to another thread */
			:: hold[s]++ /* the program keeps it */
			fi
		:: else -> skip
		fi;
		s = 0; ok = 0
	:: HELD_ANY ->
		/* free by the owner: the fast path (free.c) */
		PICK(s, HELD);
		atomic {
			hold[s]--; u[s]--;
			t = sfull[s] /* relaxed load */
		}
		if
		:: u[s] == 0 || t != AVAIL -> t = 0; span_empty(s)
		:: else -> t = 0
		fi;
		s = 0
	:: break /* the thread stops (or goes idle) here: after up to nops */
#ifdef FORK
	:: exits && !forked && !alk ->
		/* fork(): the prefork handler takes heaps_lock, aband_lock
		 * (so not while the sweeper holds it), the zone and
		 * descriptor locks (no other modelled step runs under them
		 * but as one atomic step); we follow the child. */
		forked = 1;
#ifdef FORK_FIX
		/* The fix in the child's postfork handler (heap_fixup_child):
		 * this thread's heaps can no longer be notified by anyone but
		 * itself, so a span still NOTIFIED after a drain lost its
		 * notifier to the fork, and one FULL with its xsum bit set
		 * may have lost it: make it AVAIL, back on the avail list. */
		drain(1);
		for (t : 0 .. NS - 1) {
			if
			:: my[t] != M_NO && (sfull[t] == NOTIFIED || (sfull[t] == FULL && xsum[t])) ->
				assert(onl[t] == NOH);
				sfull[t] = AVAIL;
				my[t] = M_AVAIL
			:: else -> skip
			fi
		}
		t = 0
#endif
#endif
	od;
	if
	:: exits -> thread_exit()
	:: else ->
		/* (d) when all is quiet: no lost wake-up for this heap */
		atomic {
			timeout ->
			for (t : 0 .. NS - 1) {
				if
				:: sheap[t] == h ->
					assert(lst[t] == L_OWN);
					assert(fl[t] == 0 || xsum[t]); /* (d1) */
					assert(sfull[t] != FULL || (fl[t] == 0 && my[t] == M_FULL)); /* (d2) */
					assert(sfull[t] != NOTIFIED || onl[t] == h);
					assert(sfull[t] != AVAIL || my[t] == M_AVAIL)
				:: else -> assert(my[t] == M_NO)
				fi
			}
		}
	fi;
	ndone++
}

/* A thread freeing blocks of other threads' spans: free_xthread and
 * xfree_note, then spb__heap_notify. After the flag s may be stale:
 * released, reused. */
proctype remote() PROVIDED_OTHER
{
	byte s, h;
	bool won;
#ifdef XSUM_LOAD_BEFORE_FLAG
	bool seen;
#endif
end:
	do
#ifndef XSUM_LOAD_BEFORE_FLAG
	:: atomic {
		blk?s ->
		assert(lst[s] != L_POOL && out[s] > 0);
		out[s]--;
		fl[s]++ /* (1) fetch_or of the block's xfreed bit (seq_cst) */
	   }
		if
		:: xsum[s] -> skip /* (2) load of xsum (seq_cst): set already */
		:: else -> xsum[s] = 1 /* (2) clear; (3) fetch_or of the bit (seq_cst) */
		fi;
#else
	:: atomic {
		blk?s ->
		assert(lst[s] != L_POOL && out[s] > 0);
		seen = xsum[s] /* the variant: (2) first */
	   }
		atomic { out[s]--; fl[s]++ } /* (1) */
		if
		:: !seen -> xsum[s] = 1 /* (3) */
		:: else -> skip
		fi;
		seen = 0;
#endif
		if
		:: sfull[s] == FULL -> /* load (seq_cst) */
			atomic { /* CAS FULL -> NOTIFIED */
				if
				:: sfull[s] == FULL -> sfull[s] = NOTIFIED; won = 1
				:: else -> won = 0
				fi
			}
			if
			:: won ->
				h = sheap[s]; /* load s->heap */
				assert(h != NOH); /* (c) else left NOTIFIED for good */
				/* s->notify_next = head; CAS(&h->xnotify, head, s) */
				atomic {
					assert(hst[h] == H_LIVE); /* (b) */
					assert(onl[s] == NOH);    /* (a) */
					onl[s] = h;
					xn[h] = xn[h] | BIT(s)
				}
			:: else -> skip
			fi
		:: else -> skip
		fi;
		s = 0; h = 0; won = 0
	od
}

#ifdef SWEEP
/* The background thread: spb__heap_sweep_abandoned, one span a pass. */
proctype sweeper() PROVIDED_OTHER
{
	byte s, got, n = 2;
	do
	:: n > 0 ->
		n--;
		atomic { /* aband_lock; a span of the list */
			PICK(s, IS_ABAND);
			if
			:: s != NOS -> alk = 1
			:: else -> skip
			fi
		}
		if
		:: s != NOS ->
			collect(s, aused[s]); /* under aband_lock */
			atomic { /* take it if empty; unlock */
				if
				:: aused[s] == 0 -> lst[s] = L_NONE
				:: else -> s = NOS
				fi;
				alk = 0; got = 0
			}
		:: else -> skip
		fi;
		if
		:: s != NOS -> release(s, aused[s])
		:: else -> skip
		fi;
		s = 0
	:: n == 0 -> break
	od
}
#endif

init
{
	byte i;
	atomic {
		for (i : 0 .. 2) {
			sfull[i] = AVAIL; sheap[i] = NOH; onl[i] = NOH;
			lst[i] = (i < NS -> L_POOL : L_NONE)
		}
		run owner(0, OPS_A, 0, 1); /* A */
		run owner(1, OPS_B, 0, 0); /* B */
		run owner(0, OPS_C, 1, 0); /* C: reuses A's heap struct */
		run remote();
		run remote();
#ifdef SWEEP
		run sweeper();
#endif
	}
	/* All quiet: the states agree. */
	atomic {
		ndone == 3 && timeout ->
		assert(len(blk) == 0);
		for (i : 0 .. NS - 1) {
			assert(out[i] == 0);
			if
			:: sheap[i] != NOH -> assert(hst[sheap[i]] == H_LIVE && lst[i] == L_OWN)
			:: else ->
				assert(sfull[i] == AVAIL && onl[i] == NOH);
				assert(lst[i] == L_POOL || lst[i] == L_ABAND)
			fi;
			assert(fl[i] == 0 || xsum[i]); /* (d1) */
			assert(lst[i] != L_POOL || fl[i] == 0)
		}
	}
}
