/* vsock_echo: a minimal polling virtio-mmio vsock driver, run by the host test.
 * 1. connects to host port 5000, sends two packets (header and payload split across
 *    descriptors, then in one descriptor), prints what the host answers, closes;
 * 2. says "listening", accepts the host's connection to port 1024, echoes one
 *    message upper-cased, and answers the host's shutdown with RST.
 * Interrupts stay off: the driver polls the used rings. */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;

#define MMIO 0xd0001000UL
#define QN 8
#define RXBUF 300
#define HOST_CID 2
enum { REQUEST = 1, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST };

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

struct hdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

struct desc { u64 addr; u32 len; u16 flags, next; };
struct vq {
    struct desc d[QN];
    struct { u16 flags, idx, ring[QN], used_event; } avail;
    u16 pad;
    struct { u16 flags, idx; struct { u32 id, len; } ring[QN]; u16 avail_event; } used;
    u16 last_used;
} __attribute__((aligned(4096)));
static struct vq qs[3] __attribute__((aligned(4096)));
static u8 rxbuf[QN][RXBUF];
static u8 txbuf[2][sizeof(struct hdr) + 64];
static u64 cid;
static int failed;

static void fail(const char *why) {
    puts("vsock: FAIL ");
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

/* Waits for the next used entry of queue qi; returns its id or -1 on timeout. */
static int take(u32 qi, u32 *len) {
    struct vq *q = &qs[qi];
    u64 deadline = rdtsc() + 40000000000UL;
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

static void send(u32 src, u32 dst, u16 op, u32 flags, u32 fwd, const char *data, u32 n, int single) {
    struct hdr h = { cid, HOST_CID, src, dst, n, 1, op, flags, 4096, fwd };
    struct vq *q = &qs[1];
    if (single || n == 0) {
        memcpy(txbuf[0], &h, sizeof h);
        memcpy(txbuf[0] + sizeof h, data, n);
        q->d[0] = (struct desc){ (u64)txbuf[0], (u32)sizeof h + n, 0, 0 };
    } else {
        memcpy(txbuf[0], &h, sizeof h);
        memcpy(txbuf[1], data, n);
        q->d[0] = (struct desc){ (u64)txbuf[0], sizeof h, 1, 1 };
        q->d[1] = (struct desc){ (u64)txbuf[1], n, 0, 0 };
    }
    give(1, 0);
    if (take(1, 0) < 0) fail("tx not completed");
}

/* Receives the next packet into *h and data; re-posts the buffer. 0 on timeout. */
static int recv(struct hdr *h, char *data, u32 max) {
    u32 len;
    int id = take(0, &len);
    if (id < 0 || id >= QN) { fail("rx timeout"); return 0; }
    memcpy(h, rxbuf[id], sizeof *h);
    u32 n = h->len < max ? h->len : max;
    memcpy(data, rxbuf[id] + sizeof *h, n);
    if (len != sizeof *h + h->len) fail("used length does not match the packet");
    give(0, (u16)id);
    return 1;
}

/* Next packet on (local, peer) other than credit traffic. */
static int next(u32 local, struct hdr *h, char *data, u32 max) {
    while (recv(h, data, max)) {
        if (h->dst_port != local) { fail("packet for another port"); continue; }
        if (h->op == CREDIT_UPDATE || h->op == CREDIT_REQUEST) continue;
        return 1;
    }
    return 0;
}

void guest_main(void) {
    struct hdr h;
    char data[64];
    if (r32(0) != 0x74726976 || r32(4) != 2 || r32(8) != 19) { fail("no virtio-mmio vsock at 0xd0001000"); return; }
    w32(0x70, 0);
    w32(0x70, 1 | 2);
    w32(0x14, 1);
    if (!(r32(0x10) & 1)) fail("VERSION_1 not offered");
    w32(0x24, 1);
    w32(0x20, 1);
    w32(0x24, 0);
    w32(0x20, 0);
    w32(0x70, 1 | 2 | 8);
    if (!(r32(0x70) & 8)) { fail("FEATURES_OK refused"); return; }
    for (u32 i = 0; i < 3; i++) setup_queue(i);
    w32(0x70, 1 | 2 | 8 | 4);
    cid = r32(0x100) | ((u64)r32(0x104) << 32);
    puts("vsock: cid ");
    putdec(cid);
    puts("\n");
    for (u16 i = 0; i < QN; i++) {
        qs[0].d[i] = (struct desc){ (u64)rxbuf[i], RXBUF, 2, 0 };
        give(0, i);
    }

    /* Guest-initiated: port 1234 -> host 5000. */
    send(1234, 5000, REQUEST, 0, 0, 0, 0, 0);
    if (!next(1234, &h, data, sizeof data) || h.op != RESPONSE) { fail("no RESPONSE from host port 5000"); return; }
    send(1234, 5000, RW, 0, 0, "ping-split ", 11, 0);
    send(1234, 5000, RW, 0, 0, "ping-single", 11, 1);
    if (!next(1234, &h, data, sizeof data - 1) || h.op != RW) { fail("no reply data"); return; }
    data[h.len < 63 ? h.len : 63] = 0;
    puts("vsock: got ");
    puts(data);
    puts("\n");
    send(1234, 5000, SHUTDOWN, 3, h.len, 0, 0, 0);
    while (next(1234, &h, data, sizeof data) && h.op != RST) {}
    puts("vsock: closed\n");

    /* Host-initiated: accept on port 1024 and echo once. */
    puts("vsock: listening\n");
    if (!next(1024, &h, data, sizeof data) || h.op != REQUEST) { fail("no REQUEST for port 1024"); return; }
    u32 peer = h.src_port;
    send(1024, peer, RESPONSE, 0, 0, 0, 0, 0);
    if (!next(1024, &h, data, sizeof data) || h.op != RW) { fail("no data on port 1024"); return; }
    u32 n = h.len < sizeof data ? h.len : sizeof data;
    for (u32 i = 0; i < n; i++)
        if (data[i] >= 'a' && data[i] <= 'z') data[i] -= 32;
    send(1024, peer, RW, 0, n, data, n, 1);
    while (next(1024, &h, data, sizeof data) && h.op != SHUTDOWN) {}
    send(1024, peer, RST, 0, n, 0, 0, 0);
    if (!failed) puts("vsock: echo done\n");
}
