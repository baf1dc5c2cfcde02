/* ticker: writes a word into every page of TOUCH_MIB of its memory (so a snapshot of it has
 * real content, and a cold boot the same resident memory), then writes the boot
 * timer every ~50 us for ever. `isola bench start` times a cold boot and a restore
 * from a snapshot of it to the first boot-timer write: the restored guest writes it
 * within microseconds of running again. */
#define GUEST_NAME "ticker"
#define MMIO 0xd0001000UL
#define QN 8

#include "virtio.h"

#define TOUCH_MIB 16
#define TOUCH_BASE (4UL << 20)
#define TICK_CYCLES (150UL * 1000)

void guest_main(void) {
    volatile u64 *p = (volatile u64 *)TOUCH_BASE;
    for (u64 i = 0; i < (TOUCH_MIB << 20) / 8; i += 512) p[i] = i | 1;
    puts("ticker: touched\n");
    for (;;) {
        *(volatile u32 *)0xd0000000UL = 123;
        u64 until = rdtsc() + TICK_CYCLES;
        while (rdtsc() < until) {}
    }
}
