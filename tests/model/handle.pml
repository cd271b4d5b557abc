/*
 * handle.pml — an exhaustive SPIN model of the move protocol of handle
 * objects: the object's header word and the table entry's pins
 * (lib/handle.c, the comment at its top), the inline spb_hget
 * (include/spbmalloc.h, spb__hget_inline: one load of the header at the
 * handle's place), the mover (lib/compact.c: the choice in compact_zone,
 * run_batch, unchoose) and the read side's grace period (lib/rcu.c,
 * liburcu's memb synchronize_rcu). Run by run-model.sh (ctest
 * model.handle, model.handle_old_bugs).
 *
 * One object, made at place A: its handle names A (HP, the place the
 * inline spb_hget loads). Places A, B (and C with REALLOC) each hold a
 * header and a counter (the contents) and are free or allocated. A
 * header is H0 (zeros, scrubbed, another object's), T (the handle's tag:
 * settled), TM (tag^MARK: chosen, waiting for the grace period) or TC
 * (tag^COPY: copying). The entry is (place, pins, FREE).
 *   - Writers (NW, OPS increments each, each in a read section): the
 *     inline fast path (the header at HP is T: use HP, no table), else
 *     locate: the entry; the header at its place: T use it; TM CAS back
 *     to T (cancelling the move) and use it; TC back off and read the
 *     entry again; else read the entry again: changed, start over;
 *     unchanged, the call's fatal "stale handle" (a violation). The slow
 *     path's first look at HP (spb__hget_slow) is one more fast-path load
 *     and adds no behaviour: left out.
 *   - A pinner (PINOPS increments, outside read sections): spb_hpin (the
 *     entry, CAS pins+1, then the header at the entry's place: T done, TM
 *     cancel, TC wait, else fatal), an increment, spb_hunpin (the header
 *     while still pinned, then CAS pins-1, again with what a failed CAS
 *     read).
 *   - The mover, TRIES times (TRIES=2: the object moves A -> B and then
 *     back, A reused as the target: the handle's own place): a block a
 *     bitmap says is live (any allocated place): its header (T, or skip),
 *     the entry (names that block, no pins, or skip), CAS T -> TM; the
 *     grace period (every reader inside a section when it starts, until
 *     it left that section); a new block (A or B if free, or none: CAS TM
 *     -> T back); CAS TM -> TC (fails: cancelled, the block goes back); the
 *     entry read again (not as chosen: CAS TC -> T, the block goes back);
 *     the copy (load, store); the new header T; CAS the entry (as chosen
 *     -> the new place; fails: CAS TC -> T, the new block freed as it is);
 *     the old header scrubbed (H0); the old place freed.
 *   - (FREE) a finisher, once the writers and the pinner are done (a free
 *     racing the handle's users is the program's bug), racing the mover:
 *     (REALLOC) spb_hrealloc to a bigger block (pin; pins == 1; a new
 *     block; copy; its header T; CAS the entry (old place, 1 pin) -> (new
 *     place, 0 pins), else fatal; H0 stored in the old header; the old
 *     place freed), then one more spb_hget and increment in a read
 *     section; then spb_hfree (the entry; the header: TC back off and
 *     again; T or TM CAS to H0, the contents checked there; else the entry
 *     again, unchanged = fatal; CAS the entry to FREE, else fatal; the
 *     place freed).
 * Every load, store and CAS of a shared word is one step; SPIN's
 * interleaving is sequentially consistent (the code's header and entry
 * accesses are seq_cst; the grace period is membarrier). A free leaves
 * the place's bytes as they were (a free may or may not overwrite a
 * block's first word). Waits block (until the header or the entry
 * changes; the grace period; the users' lock), so a wait that never ends
 * is an invalid end state.
 *
 * Properties: (a) no lost write: when all are done, the counter at the
 * entry's place (with FREE: at the place the freer settled, when it
 * settles it) equals the increments made; (b) no access to a freed place
 * (increments, the pinner's and unpin's header looks, the mover's copy)
 * and no increment of a place in flight while the mover copies it (a torn
 * copy); (c) no deadlock (invalid end states); (d) no fatal error on the
 * valid handle; (e) when all are done the object is settled (T, no pins)
 * and the header at HP is T only if the object is there (else a later
 * inline spb_hget would use a freed place).
 *
 * Not modelled: several objects or handles (another handle's tag at a
 * reused place is H0 here: it never equals T), the key (a tag is never
 * data by chance), users racing their own spb_hrealloc/spb_hfree (the
 * program's race: spb_hrealloc frees the old block without a grace
 * period, so a reader holding its address in a read section would read
 * freed memory), the mover's speculative reads of a span's descriptor
 * (validated by the header and entry checks, which are modelled),
 * spb_hrealloc's in-place and EBUSY paths, fork's gate, and memory orders
 * weaker than seq_cst.
 *
 * Found by this model in the protocol's first version (TRIES=2), fixed
 * in lib/ since, and kept as variants SPIN must find (model.handle_old_bugs):
 *   OLD_TAG_BEFORE_CAS  run_batch stored T in the new header before its
 *     CAS of the entry. When the new block is the handle's own place (the
 *     object came from there: moved A -> B, then B -> A), a fast-path
 *     spb_hget uses it before the move is decided, and a failed CAS (a pin
 *     taken during the copy) frees it with T still in it: the inline
 *     spb_hget then uses a freed place and the write is lost. Scrubbing
 *     the new header on failure only (with ALT_SCRUB_NEW) is not enough:
 *     a reader that loaded T before still writes there. Now: the new
 *     header is TC until the CAS succeeded (then T, then the old header
 *     H0); on failure H0 before the free.
 *   OLD_FREE_NO_SECTION  spb_hfree outside a read section: between its
 *     read of the entry and its second read (after a scrubbed header), the
 *     object can move away and back (A -> B -> A), the entry reads the
 *     same and hfree dies with "stale or invalid handle" on a valid
 *     handle. Now its look is inside a read section (the second move's
 *     grace period waits for it).
 * Not a bug: without the mover's scrub of the old header
 * (OLD_MOVER_NO_SCRUB) nothing goes wrong: the old header is TC, never T.
 *
 * Variants (bugs SPIN must find: model.handle_old_bugs):
 *   OLD_NO_GRACE      the mover copies without waiting for the grace
 *                     period: a fast-path writer that loaded T writes
 *                     during the copy, or in the freed place.
 *   OLD_NO_REREAD     the mover does not read the entry after its CAS to
 *                     TC: a pin taken between its look at the entry and
 *                     its CAS to TM is missed: the pinned object is copied
 *                     while written (a write lost).
 *   OLD_NO_CANCEL     locate uses the place on TM without cancelling: its
 *                     write races the copy, or lands in the freed place.
 *   OLD_NO_SCRUB      spb_hrealloc does not scrub the old header: it keeps
 *                     T, and a later fast-path spb_hget uses the freed
 *                     place A.
 *   OLD_UNPIN_LATE_CHECK  spb_hunpin reads the header after its CAS (a
 *                     first draft): the pins at 0, the mover may move the
 *                     object and free the place first.
 */
#ifndef NW
#define NW 2
#endif
#ifndef OPS
#define OPS 2
#endif
#ifndef PINOPS
#define PINOPS 1
#endif
#ifndef TRIES
#define TRIES 1
#endif
#ifdef REALLOC
#ifndef FREE
#define FREE
#endif
#define NP 3
#else
#define NP 2
#endif
#ifdef FREE
#define NFIN 1
#else
#define NFIN 0
#endif

#define A 0
#define B 1
#define C 2
#define HP A /* the handle's place */

#define H0 0 /* zeros, scrubbed, another object's header */
#define T 1  /* the handle's tag */
#define TM 2 /* tag^MARK */
#define TC 3 /* tag^COPY */

byte hdr[NP];
byte mem[NP];
bool freed[NP];
byte inflight[NP]; /* increments between their load and store, by place */
byte made = 0;     /* increments completed */
/* The entry: the object's place, its pins, FREE. */
byte eplace = A, pins = 0;
bool efree = false;
#ifdef FREE
#define NR (NW + 1) /* the finisher's read sections: slot NW */
#else
#define NR NW
#endif
#ifdef REALLOC
#define NLATE 1 /* the finisher's increment after its realloc */
#else
#define NLATE 0
#endif
bool insec[NR];    /* reader inside a read section */
byte secid[NR];    /* sections entered, per reader */
byte done = 0;     /* processes done */
byte udone = 0;    /* users (writers, pinner) done */

#define LOADE atomic { wp = eplace; wn = pins; wf = efree }
#define ESAME (eplace == wp && pins == wn && efree == wf)

/* The users' own increments are serialised by a lock of theirs (ulock:
 * two users writing one object is their business); the mover takes no
 * lock of theirs, which is the point. */
bool ulock = false;
inline increment(p)
{
	atomic { !ulock -> ulock = true }
	atomic { assert(!freed[p]); v = mem[p]; inflight[p]++ }
	atomic { assert(!freed[p]); mem[p] = v + 1; inflight[p]--; made++; ulock = false; v = 0 }
}

/* CAS header TM -> T, as one step (true in ok). */
inline cancel(q)
{
	atomic {
		if
		:: hdr[q] == TM -> hdr[q] = T; ok = true
		:: else -> ok = false
		fi
	}
}

/* spb__hget_inline: the header at the handle's place, then locate. */
inline hget(p)
{
	if
	:: hdr[HP] == T -> p = HP
	:: else ->
		do
		:: LOADE;
			assert(!wf); /* fatal: stale handle */
			atomic { v = hdr[wp] }
			if
			:: v == T -> p = wp; break
			:: v == TM ->
#ifndef OLD_NO_CANCEL
				cancel(wp);
				if
				:: ok -> p = wp; break
				:: else
				fi
#else
				p = wp; break
#endif
			:: v == TC -> /* backoff, then the entry again */
				(hdr[wp] != TC || !ESAME)
			:: else ->
				if
				:: ESAME -> assert(false) /* fatal: stale handle */
				:: else /* moved meanwhile */
				fi
			fi
		od
	fi;
	v = 0; wp = 0; wn = 0
}

proctype writer(byte id)
{
	byte n = 0, p, v, wp, wn;
	bool wf, ok;
	do
	:: n < OPS ->
		atomic { insec[id] = true; secid[id]++ }
		hget(p);
		increment(p);
		atomic { insec[id] = false; n++; p = 0 }
	:: else -> break
	od;
	atomic { done++; udone++ }
}

/* spb_hpin: the place pinned comes back in p. */
inline pin(p)
{
	do
	:: LOADE;
		assert(!wf);
		if
		:: atomic { ESAME -> pins++ } ->
			do
			:: atomic { assert(!freed[wp]); v = hdr[wp] }
				if
				:: v == T -> goto pinned
				:: v == TM ->
					cancel(wp);
					if
					:: ok -> goto pinned
					:: else
					fi
				:: v == TC -> (hdr[wp] != TC) /* the mover sees the pin */
				:: else -> atomic { pins-- }; assert(false) /* fatal */
				fi
			od
		:: else /* the CAS failed: again */
		fi
	od;
pinned:
	atomic { p = wp; v = 0; wn = 0 }
}

/* spb_hunpin */
inline unpin()
{
	LOADE;
	do
	:: assert(!wf && wn > 0); /* fatal: stale, or not pinned */
#ifndef OLD_UNPIN_LATE_CHECK
		/* the header, checked while still pinned */
		atomic {
			assert(!freed[wp]);
			assert(hdr[wp] == T || hdr[wp] == TM || hdr[wp] == TC)
		}
		if
		:: atomic { ESAME -> pins-- } -> break
		:: atomic { !ESAME -> wp = eplace; wn = pins; wf = efree }
		fi
#else
		if
		:: atomic { ESAME -> pins-- } -> break
		:: atomic { !ESAME -> wp = eplace; wn = pins; wf = efree }
		fi
#endif
	od;
#ifdef OLD_UNPIN_LATE_CHECK
	atomic {
		assert(!freed[wp]);
		assert(hdr[wp] == T || hdr[wp] == TM || hdr[wp] == TC)
	}
#endif
	atomic { wp = 0; wn = 0 }
}

proctype pinner()
{
	byte n = 0, p, v, wp, wn;
	bool wf, ok;
	do
	:: n < PINOPS ->
		pin(p);
		increment(p);
		unpin();
		atomic { n++; p = 0 }
	:: else -> break
	od;
	atomic { done++; udone++ }
}

proctype mover()
{
	byte t = 0, src, dst, wp, wn, v, i;
	bool wf, want[NR];
	byte snap[NR];
	do
	:: t < TRIES ->
		t++;
		/* A block a bitmap says is live: its header, then its entry. */
		if
		:: atomic { !freed[A] -> src = A; v = hdr[A] }
		:: atomic { !freed[B] -> src = B; v = hdr[B] }
#ifdef REALLOC
		:: atomic { !freed[C] -> src = C; v = hdr[C] }
#endif
		:: else -> goto next
		fi;
		if
		:: v != T -> goto next /* no handle's object, or being moved */
		:: else -> v = 0
		fi;
		LOADE;
		if
		:: wf || wp != src || wn != 0 -> goto next
		:: else
		fi;
		/* chosen: CAS T -> TM */
		if
		:: atomic { hdr[src] == T -> hdr[src] = TM }
		:: else -> goto next
		fi;
#ifndef OLD_NO_GRACE
		/* synchronize_rcu: every section open now ends before we go on */
		atomic {
			i = 0;
			do
			:: i < NR -> want[i] = insec[i]; snap[i] = secid[i]; i++
			:: else -> break
			od
		}
		i = 0;
		do
		:: i < NR -> (!want[i] || !insec[i] || secid[i] != snap[i]);
			atomic { want[i] = false; snap[i] = 0; i++ }
		:: else -> i = 0; break
		od;
#endif
		/* a new block */
		if
		:: atomic { freed[A] && src != A -> dst = A; freed[A] = false }
		:: atomic { freed[B] && src != B -> dst = B; freed[B] = false }
		:: true -> /* none, or not a target (the source span, ...) */
			atomic { if :: hdr[src] == TM -> hdr[src] = T :: else fi };
			goto next
		fi;
		/* CAS TM -> TC: fails if cancelled (or scrubbed) */
		if
		:: atomic { hdr[src] == TM -> hdr[src] = TC }
		:: else -> freed[dst] = true; goto next
		fi;
#ifndef OLD_NO_REREAD
		/* the entry again: a pin since the choice, or a change */
		if
		:: !ESAME ->
			atomic { if :: hdr[src] == TC -> hdr[src] = T :: else fi };
			freed[dst] = true;
			goto next
		:: else
		fi;
#endif
		/* the copy */
		atomic { assert(!freed[src] && inflight[src] == 0); v = mem[src] }
		atomic { assert(inflight[src] == 0); mem[dst] = v; v = 0 }
#ifdef OLD_TAG_BEFORE_CAS
		hdr[dst] = T;
#else
		hdr[dst] = TC;
#endif
		if
		:: atomic { ESAME -> eplace = dst } ->
#ifndef OLD_TAG_BEFORE_CAS
			hdr[dst] = T;
#endif
#ifndef OLD_MOVER_NO_SCRUB
			hdr[src] = H0; /* the old place answers no more */
#endif
			freed[src] = true
		:: else -> /* pinned while copying: back */
			atomic { if :: hdr[src] == TC -> hdr[src] = T :: else fi };
#if !defined(OLD_TAG_BEFORE_CAS) || defined(ALT_SCRUB_NEW)
			hdr[dst] = H0;
#endif
			freed[dst] = true
		fi;
next:
		atomic { src = 0; dst = 0; v = 0; wp = 0; wn = 0; wf = false }
	:: else -> break
	od;
	atomic { done++ }
}

#ifdef FREE
proctype finisher()
{
	byte p, q, v, wp, wn;
	bool wf, ok;
	(udone == NW + 1); /* the users are done */
#ifdef REALLOC
	/* spb_hrealloc to a bigger block */
	pin(p);
	LOADE;
	assert(wn == 1); /* else EBUSY; nobody else pins here */
	if
	:: atomic { freed[A] -> q = A; freed[A] = false }
	:: atomic { freed[B] -> q = B; freed[B] = false }
	:: atomic { freed[C] -> q = C; freed[C] = false }
	fi;
	atomic { assert(!freed[p]); v = mem[p] }
	atomic { mem[q] = v; v = 0 }
	hdr[q] = T;
	if
	:: atomic { ESAME -> eplace = q; pins = 0 }
	:: else -> assert(false) /* fatal: pinned, unpinned or freed meanwhile */
	fi;
#ifndef OLD_NO_SCRUB
	hdr[p] = H0; /* the old place answers for h no more */
#endif
	freed[p] = true;
	atomic { p = 0; q = 0; wp = 0; wn = 0 }
	/* a later user: spb_hget and an increment in a read section */
	atomic { insec[NW] = true; secid[NW]++ }
	hget(p);
	increment(p);
	atomic { insec[NW] = false; p = 0 }
#endif
	/* spb_hfree */
#ifndef OLD_FREE_NO_SECTION
	atomic { insec[NW] = true; secid[NW]++ }
#endif
	do
	:: LOADE;
		assert(!wf);
		atomic { v = hdr[wp] }
		if
		:: v == TC -> (hdr[wp] != TC || !ESAME) /* backoff; again */
		:: v == T || v == TM ->
			assert(wn == 0); /* fatal: pinned */
			if
			:: atomic { hdr[wp] == v -> hdr[wp] = H0; assert(mem[wp] == made) } ->
				if
				:: atomic { ESAME -> efree = true }
				:: else -> assert(false) /* fatal: pinned or used */
				fi;
				freed[wp] = true;
#ifndef OLD_FREE_NO_SECTION
				insec[NW] = false;
#endif
				break
			:: else /* a move finished, or a reader cancelled */
			fi
		:: else ->
			if
			:: ESAME -> assert(false) /* fatal: stale */
			:: else /* moved meanwhile */
			fi
		fi
	od;
	atomic { done++ }
}
#endif

init {
	byte i = 0;
	atomic {
		hdr[A] = T;
		freed[B] = true;
#ifdef REALLOC
		freed[C] = true;
#endif
		do
		:: i < NW -> run writer(i); i++
		:: else -> break
		od;
		run pinner();
		run mover();
#ifdef FREE
		run finisher()
#endif
	}
	(done == NW + 2 + NFIN);
	assert(made == NW * OPS + PINOPS + NLATE);
	/* (a) no lost write; the object settled */
	assert(efree || (!freed[eplace] && pins == 0 && hdr[eplace] == T && mem[eplace] == made));
	/* (e) no place but the object's answers for the handle */
	assert((!efree && eplace == HP) || hdr[HP] != T)
}
