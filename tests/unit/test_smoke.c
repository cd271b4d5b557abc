#include "engine.h"
#include <stdio.h>
#include <string.h>
int main(void)
{
	void *p = spb_pages_alloc(4096, 0, SPB_UNMOVABLE, 0);
	memset(p, 1, 4096);
	void *q = spb_pages_alloc(4 << 20, 0, SPB_MOVABLE, 0);
	memset(q, 1, 4 << 20);
	printf("%p %p %zu %zu\n", p, q, spb_pages_usable_size(p), spb_pages_usable_size(q));
	spb_pages_free(p);
	spb_pages_free(q);
	for (size_t i = 0; i < spb_counter_count(); i++)
		printf("%-28s %llu\n", spb_counter_name(i), (unsigned long long)spb_counter_value(i));
	return 0;
}
