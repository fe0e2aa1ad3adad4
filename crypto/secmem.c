#include "secmem.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Key slots: free ones are chained through their first bytes; slabs are never returned. */
#define KEY_SLAB_SLOTS 256
static pthread_mutex_t key_lock = PTHREAD_MUTEX_INITIALIZER;
static void *key_free_list;

/* Adds a new slab's slots to the free list. Caller holds key_lock. */
static int key_slab_add(void)
{
	unsigned char *slab = sodium_malloc(KEY_SLAB_SLOTS * SECMEM_KEY_LEN);

	if (!slab)
		return -1;
	for (size_t i = 0; i < KEY_SLAB_SLOTS; i++) {
		void *slot = slab + i * SECMEM_KEY_LEN;

		sodium_memzero(slot, SECMEM_KEY_LEN);
		*(void **)slot = key_free_list;
		key_free_list = slot;
	}
	return 0;
}

void *secmem_key_alloc(void)
{
	void *slot = NULL;

	pthread_mutex_lock(&key_lock);
	if (key_free_list || key_slab_add() == 0) {
		slot = key_free_list;
		key_free_list = *(void **)slot;
	}
	pthread_mutex_unlock(&key_lock);
	if (slot)
		sodium_memzero(slot, SECMEM_KEY_LEN);
	return slot;
}

void secmem_key_free(void *p)
{
	if (!p)
		return;
	sodium_memzero(p, SECMEM_KEY_LEN);
	pthread_mutex_lock(&key_lock);
	*(void **)p = key_free_list;
	key_free_list = p;
	pthread_mutex_unlock(&key_lock);
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

ssize_t secmem_read_key(int fd, unsigned char **key)
{
	unsigned char *buf;
	struct stat st;
	size_t got = 0;

	*key = NULL;
	if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
		return -EISDIR;
	buf = secmem_alloc(SECMEM_KEY_LEN + 1);
	if (!buf)
		return -ENOMEM;
	while (got < SECMEM_KEY_LEN + 1) { /* a pipe may give it in pieces */
		ssize_t n = read(fd, buf + got, SECMEM_KEY_LEN + 1 - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = errno;

			secmem_free(buf);
			return -err;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	if (got == SECMEM_KEY_LEN)
		*key = buf;
	else
		secmem_free(buf);
	return (ssize_t)got;
}
