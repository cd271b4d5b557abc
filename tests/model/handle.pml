/*
 * handle.pml — an exhaustive SPIN model of the move protocol of handle
 * objects: the entry's word (lib/handle.c, the comment at its top), the
 * mover (lib/compact.c, run_batch) and the read side's grace period
 * (lib/rcu.c, liburcu's memb synchronize_rcu). Run by run-model.sh
 * (ctest model.handle, model.handle_old_bugs).
 *
 * One object, at place A, that the mover tries to move to place B. The
 * word is (state, place, pins): NORMAL, MOVING, COPYING or FREE. Each
 * place holds a counter.
 *   - Writers (NW, in read sections): spb_read_lock; spb_hget (NORMAL: the
 *     place; MOVING: CAS back to NORMAL, cancelling the move, and the
 *     place; COPYING: wait until the mover stored the new word); then an
 *     increment of the counter at that place as two steps (load, store);
 *     spb_read_unlock. OPS increments each.
 *   - A pinner: spb_hpin (settle as above, then CAS pins + 1 on a NORMAL
 *     word, then a read of the object's header: is it h's?), an increment
 *     outside any read section, spb_hunpin (the header read while still
 *     pinned, then CAS pins - 1).
 *   - The mover: CAS NORMAL with no pins -> MOVING; a grace period (it
 *     waits, for every writer inside a section when it starts, until that
 *     writer has left that section); CAS MOVING -> COPYING (fails if
 *     cancelled: the move is dropped); copy A to B (load, store); store
 *     NORMAL at B; A is freed (no access to A after that is allowed).
 * Every load, store and CAS of a shared word is one step; SPIN's
 * interleaving is sequentially consistent (the code's orders: acquire
 * loads of the word, acq_rel CASes, a release store of the new word, and
 * membarrier in the grace period).
 *
 * Properties: (a) no lost write: when all are done, the counter at the
 * word's place equals the increments made; (b) no access to a freed
 * place, and no increment of A in flight while the mover copies A (a torn
 * copy); (c) no deadlock (SPIN's invalid end states).
 *
 * Not modelled: spb_hfree and spb_hrealloc (they settle the word like the
 * pinner, then replace it under a CAS; tests/api/test_compact's churner
 * and the fuzzer cover them), several objects, and the mover's speculative
 * reads (validated by the CAS to MOVING, which the model starts from).
 *
 * Variants:
 *   OLD_NO_GRACE   the mover copies without waiting for the grace period
 *                  (a move without the read side): must fail.
 *   OLD_NO_CANCEL  readers that find MOVING use the place without
 *                  cancelling: must fail (they write during the copy).
 *   OLD_UNPIN_LATE_CHECK  spb_hunpin reads the header after its CAS (a
 *                  first draft): must fail (the pins at 0, the mover may
 *                  move the object and free the place first).
 */
#ifndef NW
#define NW 2
#endif
#ifndef OPS
#define OPS 2
#endif

#define NORMAL 0
#define MOVING 1
#define COPYING 2
#define FREE 3
#define A 0
#define B 1

byte state = NORMAL, place = A, pins = 0;
byte mem[2];
bool freed[2];
byte inflight[2];       /* increments between their load and store, by place */
byte made = 0;          /* increments completed */
bool insec[NW];         /* writer inside a read section */
byte secid[NW];         /* sections entered, per writer */
byte done = 0;

/* Settle the word for a user: cancel a move, wait out a copy; the place
 * to use comes back in p. */
inline settle(p)
{
	do
	:: atomic { state == NORMAL -> p = place; break }
#ifndef OLD_NO_CANCEL
	:: atomic { state == MOVING -> state = NORMAL; p = place; break }
#else
	:: atomic { state == MOVING -> p = place; break }
#endif
	:: atomic { state == COPYING -> skip } /* wait: the mover stores soon */
	od
}

/* The users' own increments are serialised by a lock of theirs (ulock:
 * two users writing one object is their business); the mover takes no
 * lock of theirs, which is the point. */
bool ulock = false;
inline increment(p)
{
	atomic { !ulock -> ulock = true }
	atomic { assert(!freed[p]); v = mem[p]; inflight[p]++ }
	atomic { assert(!freed[p]); mem[p] = v + 1; inflight[p]--; made++; ulock = false }
}

proctype writer(byte id)
{
	byte n = 0, p, v;
	do
	:: n < OPS ->
		atomic { insec[id] = true; secid[id]++ }
		settle(p);
		increment(p);
		insec[id] = false;
		n++
	:: else -> break
	od;
	atomic { done++ }
}

proctype pinner()
{
	byte n = 0, p, v;
	do
	:: n < OPS ->
		/* spb_hpin: settle, then pins + 1 on the NORMAL word */
		do
		:: atomic { state == NORMAL -> pins++; p = place; break }
		:: atomic { state == MOVING -> state = NORMAL }
		:: atomic { state == COPYING -> skip }
		od;
		/* after its CAS: the object's header at p (is it h's?) */
		atomic { assert(!freed[p]) }
		increment(p);
		/* spb_hunpin: the header checked while still pinned, then
		 * the CAS pins - 1 */
#ifndef OLD_UNPIN_LATE_CHECK
		atomic { assert(!freed[place]) }
		atomic { pins-- }
#else
		atomic { pins--; p = place }
		atomic { assert(!freed[p]) }
#endif
		n++
	:: else -> break
	od;
	atomic { done++ }
}

proctype mover()
{
	byte snap[NW], i, v;
	bool want[NW];
	/* choose: NORMAL with no pins -> MOVING */
	if
	:: atomic { state == NORMAL && pins == 0 && place == A -> state = MOVING }
	:: atomic { !(state == NORMAL && pins == 0 && place == A) -> goto out }
	fi;
#ifndef OLD_NO_GRACE
	/* synchronize_rcu: every section open now ends before we go on */
	atomic {
		i = 0;
		do
		:: i < NW -> want[i] = insec[i]; snap[i] = secid[i]; i++
		:: else -> break
		od
	}
	i = 0;
	do
	:: i < NW -> (!want[i] || !insec[i] || secid[i] != snap[i]); i++
	:: else -> break
	od;
#endif
	/* MOVING -> COPYING, or the move was cancelled */
	if
	:: atomic { state == MOVING -> state = COPYING }
	:: atomic { state != MOVING -> goto out }
	fi;
	atomic { assert(inflight[A] == 0); v = mem[A] }
	atomic { assert(inflight[A] == 0); mem[B] = v }
	atomic { state = NORMAL; place = B }
	freed[A] = true;
out:
	atomic { done++ }
}

init {
	byte i = 0;
	atomic {
		do
		:: i < NW -> run writer(i); i++
		:: else -> break
		od;
		run pinner();
		run mover()
	}
	(done == NW + 2);
	/* (a) no lost write */
	assert(mem[place] == made);
	assert(made == (NW + 1) * OPS)
}
