/* counter: prints "count N" for N = 0..LIMIT-1, about 20 ms apart (by the TSC), with
 * the count in guest memory, then finishes. The snapshot tests stop it mid-count:
 * every clone restored from the snapshot must go on from the same N, on its own copy
 * of memory, and print exactly the rest of the sequence. */
#define GUEST_NAME "counter"
#define MMIO 0xd0001000UL
#define QN 8

#include "virtio.h"

#define LIMIT 100
#define GAP_CYCLES (40UL * 1000 * 1000)

static volatile u64 count;

void guest_main(void) {
    for (count = 0; count < LIMIT; count++) {
        puts("count ");
        putdec(count);
        puts("\n");
        u64 until = rdtsc() + GAP_CYCLES;
        while (rdtsc() < until) {}
    }
}
