/*
 * leak.c: a server whose cache leaks, for the end-to-end tests of charge stacks
 * (tests/tests/stacks.rs compiles it with `cc -O1 -g -fno-omit-frame-pointer -fno-inline`).
 *
 *     leak MIB_PER_S
 *
 * `main` serves a request every 1/(4 * MIB_PER_S) s: `handle_request` calls `cache_put`, which
 * keeps a 256 KiB entry forever (the leak, MIB_PER_S MiB/s), then `main` calls `churn`, which
 * allocates as many bytes in 64 KiB blocks and frees each at once. Prints `started`, then
 * `leaked <bytes>` after every MiB, until it is killed.
 *
 * Why the stacks come out as they do:
 * - An entry (256 KiB) is above glibc's mmap threshold (128 KiB, and it only rises when an
 *   mmapped chunk is freed, which never happens here): malloc maps fresh zero pages and writes
 *   only the chunk header on the first page. The loop in cache_put writes every page, so the
 *   page faults that charge the memcg happen with the instruction pointer in cache_put, whose
 *   frame pointer chain leads to handle_request and main. (A memset would fault inside libc,
 *   which has no frame pointers, and lose the chain.)
 * - churn's blocks (64 KiB) are below the threshold: they come from the brk heap. Each freed
 *   block goes back to the top of the heap, and glibc keeps M_TOP_PAD (128 KiB) of it when it
 *   trims, so the next block reuses the same pages, already faulted in and charged. churn
 *   allocates as many bytes as cache_put, yet after its first call charges (almost) nothing
 *   new: an allocation profiler would rank the two alike, the memcg's charges do not.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ENTRY_BYTES (256 << 10)
#define BLOCK_BYTES (64 << 10)
#define BLOCKS_PER_REQUEST (ENTRY_BYTES / BLOCK_BYTES)
#define PAGE 4096

/* The cache: a list threaded through the entries themselves, never freed. */
struct entry {
    struct entry *next;
};
static struct entry *cache;
static long cached_bytes;

__attribute__((noinline)) void cache_put(void)
{
    volatile char *bytes = malloc(ENTRY_BYTES);
    if (bytes == NULL) {
        fprintf(stderr, "leak: malloc of %d bytes failed\n", ENTRY_BYTES);
        exit(3);
    }
    for (size_t offset = 0; offset < ENTRY_BYTES; offset += PAGE)
        bytes[offset] = 1;
    struct entry *entry = (struct entry *)bytes;
    entry->next = cache;
    cache = entry;
}

/*
 * One request: the leak. Returns the bytes the cache holds; working on after cache_put
 * returns keeps the call a call (a tail call, as -O2 makes, would leave no frame of
 * handle_request).
 */
__attribute__((noinline)) long handle_request(void)
{
    cache_put();
    cached_bytes += ENTRY_BYTES;
    return cached_bytes;
}

__attribute__((noinline)) void churn(void)
{
    for (int i = 0; i < BLOCKS_PER_REQUEST; i++) {
        volatile char *block = malloc(BLOCK_BYTES);
        if (block == NULL) {
            fprintf(stderr, "leak: malloc of %d bytes failed\n", BLOCK_BYTES);
            exit(3);
        }
        for (size_t offset = 0; offset < BLOCK_BYTES; offset += PAGE)
            block[offset] = 1;
        free((void *)block);
    }
}

int main(int argc, char **argv)
{
    long mib_per_s = argc == 2 ? strtol(argv[1], NULL, 10) : 0;
    if (mib_per_s <= 0) {
        fprintf(stderr, "usage: leak MIB_PER_S\n");
        return 2;
    }
    long requests_per_mib = (1 << 20) / ENTRY_BYTES;
    long period_ns = 1000000000L / (mib_per_s * requests_per_mib);
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    printf("started\n");
    fflush(stdout);
    for (long served = 1;; served++) {
        long held = handle_request();
        churn();
        if (served % requests_per_mib == 0) {
            printf("leaked %ld\n", held);
            fflush(stdout);
        }
        next.tv_nsec += period_ns;
        while (next.tv_nsec >= 1000000000L) {
            next.tv_nsec -= 1000000000L;
            next.tv_sec += 1;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
    }
}
