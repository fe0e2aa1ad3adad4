#include "secmem.h"

#include <sodium.h>
#include <sys/prctl.h>
#include <sys/resource.h>

/* A core file would hold every unwrapped key: forbid them before any key is made. */
int secmem_init(void)
{
	struct rlimit no_core = {0, 0};

	if (sodium_init() < 0)
		return -1;
	if (setrlimit(RLIMIT_CORE, &no_core) != 0)
		return -1;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		return -1;
	return 0;
}

void *secmem_alloc(size_t n)
{
	return sodium_malloc(n);
}

void secmem_free(void *p)
{
	if (p)
		sodium_free(p);
}

void secmem_wipe(void *p, size_t n)
{
	sodium_memzero(p, n);
}

/* noinline: the buffer must be a new frame below the caller's, where its callees' were. */
__attribute__((noinline)) void secmem_wipe_stack(void)
{
	unsigned char below[SECMEM_STACK_WIPE];

	sodium_memzero(below, sizeof(below));
	__asm__ __volatile__("" : : "r"(below) : "memory");
}
