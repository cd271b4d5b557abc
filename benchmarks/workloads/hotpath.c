/*
 * hotpath.c — the malloc/free fast path alone: one thread, 4096 slots, a
 * xorshift stream decides for each slot to free what it holds or to
 * allocate 16..528 bytes (touching one byte). Meant for instruction
 * counts (valgrind --tool=callgrind) and paired wall-time runs of one
 * allocator against another build of itself: wl_hotpath [OPERATIONS].
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 2000000;
	enum { SLOTS = 4096 };
	static void *slot[SLOTS];
	uint64_t x = 88172645463325252ull;
	for (long i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		unsigned k = (unsigned)(x % SLOTS);
		if (slot[k]) {
			free(slot[k]);
			slot[k] = NULL;
		} else {
			slot[k] = malloc(16 + (x >> 20) % 513);
			if (!slot[k])
				return 1;
			*(volatile char *)slot[k] = 1;
		}
	}
	for (int k = 0; k < SLOTS; k++)
		free(slot[k]);
	return 0;
}
