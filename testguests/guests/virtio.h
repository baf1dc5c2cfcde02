/* Shared by the C test guests: entry and stack, serial output, the TSC, and a
 * polling split-virtqueue driver for the virtio-mmio device at MMIO (interrupts stay
 * off). Define GUEST_NAME, MMIO and QN before including. */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;


__asm__(".text\n.globl _start\n_start:\n lea stack_top(%rip), %rsp\n call guest_main\n jmp finish\n");

__attribute__((used)) u8 stack[16384] __attribute__((aligned(16)));
__asm__(".globl stack_top\n.set stack_top, stack + 16384\n");

void *memcpy(void *d, const void *s, unsigned long n) {
    u8 *dd = d;
    const u8 *ss = s;
    while (n--) *dd++ = *ss++;
    return d;
}
void *memset(void *d, int c, unsigned long n) {
    u8 *dd = d;
    while (n--) *dd++ = (u8)c;
    return d;
}

static inline void outb(u16 port, u8 v) { __asm__ volatile("outb %0, %1" ::"a"(v), "Nd"(port)); }
static inline void barrier(void) { __asm__ volatile("mfence" ::: "memory"); }
static inline u64 rdtsc(void) {
    u32 lo, hi;
    __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
    return ((u64)hi << 32) | lo;
}
static void puts(const char *s) { while (*s) outb(0x3f8, (u8)*s++); }
static void putdec(u64 v) {
    char b[21];
    int i = 20;
    b[i] = 0;
    do { b[--i] = (char)('0' + v % 10); v /= 10; } while (v);
    puts(&b[i]);
}
static void w32(u64 off, u32 v) { *(volatile u32 *)(MMIO + off) = v; }
static u32 r32(u64 off) { return *(volatile u32 *)(MMIO + off); }


struct desc { u64 addr; u32 len; u16 flags, next; };
struct vq {
    struct desc d[QN];
    struct { u16 flags, idx, ring[QN], used_event; } avail;
    u16 pad;
    struct { u16 flags, idx; struct { u32 id, len; } ring[QN]; u16 avail_event; } used;
    u16 last_used;
} __attribute__((aligned(4096)));
static struct vq qs[3] __attribute__((aligned(4096)));
static int failed;

static void fail(const char *why) {
    puts(GUEST_NAME ": FAIL ");
    puts(why);
    puts("\n");
    failed = 1;
}

static void setup_queue(u32 i) {
    struct vq *q = &qs[i];
    w32(0x30, i);
    if (r32(0x34) < QN) fail("queue too small");
    w32(0x38, QN);
    w32(0x80, (u32)(u64)q->d);
    w32(0x84, (u32)((u64)q->d >> 32));
    w32(0x90, (u32)(u64)&q->avail);
    w32(0x94, 0);
    w32(0xa0, (u32)(u64)&q->used);
    w32(0xa4, 0);
    w32(0x44, 1);
}

static void give(u32 qi, u16 head) {
    struct vq *q = &qs[qi];
    q->avail.ring[q->avail.idx % QN] = head;
    barrier();
    q->avail.idx++;
    barrier();
    w32(0x50, qi);
}

/* Waits up to `ticks` TSC ticks for the next used entry of queue qi; returns its id,
 * or -1 on timeout. */
static int take_within(u32 qi, u32 *len, u64 ticks) {
    struct vq *q = &qs[qi];
    u64 deadline = rdtsc() + ticks;
    while (*(volatile u16 *)&q->used.idx == q->last_used) {
        if (rdtsc() > deadline) return -1;
        __asm__ volatile("pause");
    }
    barrier();
    u16 slot = q->last_used % QN;
    q->last_used++;
    if (len) *len = q->used.ring[slot].len;
    return (int)q->used.ring[slot].id;
}

static int take(u32 qi, u32 *len) { return take_within(qi, len, 40000000000UL); }

/* Resets and starts device `id` with VERSION_1 plus `feat_lo`, and `nq` queues.
 * Returns 0, or 1 after saying why not. */
static int virtio_start(u32 id, u32 feat_lo, u32 nq) {
    if (r32(0) != 0x74726976 || r32(4) != 2 || r32(8) != id) { fail("no such virtio-mmio device"); return 1; }
    w32(0x70, 0);
    w32(0x70, 1 | 2);
    w32(0x14, 1);
    if (!(r32(0x10) & 1)) { fail("VERSION_1 not offered"); return 1; }
    w32(0x24, 1);
    w32(0x20, 1);
    w32(0x24, 0);
    w32(0x20, feat_lo);
    w32(0x70, 1 | 2 | 8);
    if (!(r32(0x70) & 8)) { fail("FEATURES_OK refused"); return 1; }
    for (u32 i = 0; i < nq; i++) setup_queue(i);
    w32(0x70, 1 | 2 | 8 | 4);
    return 0;
}

