/* vsock_echo: a minimal polling virtio-mmio vsock driver, run by the host test.
 * 1. connects to host port 5000, sends two packets (header and payload split across
 *    descriptors, then in one descriptor), prints what the host answers, closes;
 * 2. says "listening", accepts the host's connection to port 1024, echoes one
 *    message upper-cased, and answers the host's shutdown with RST.
 * Interrupts stay off: the driver polls the used rings. */
#define GUEST_NAME "vsock"
#define MMIO 0xd0001000UL
#define QN 8
#define RXBUF 300
#define HOST_CID 2
enum { REQUEST = 1, RESPONSE, RST, SHUTDOWN, RW, CREDIT_UPDATE, CREDIT_REQUEST };

#include "virtio.h"

struct hdr {
    u64 src_cid, dst_cid;
    u32 src_port, dst_port, len;
    u16 type, op;
    u32 flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

static u8 rxbuf[QN][RXBUF];
static u8 txbuf[2][sizeof(struct hdr) + 64];
static u64 cid;

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
    if (virtio_start(19, 0, 3)) return;
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
