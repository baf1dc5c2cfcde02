/* net_arp: a minimal polling virtio-net driver. It asks (ARP) who has 10.99.0.1,
 * from 10.99.0.2 and the MAC in config space, until an answer arrives or ~5 s pass,
 * and prints the answer: the host test puts 10.99.0.1 on the other end of the tap. */
#define GUEST_NAME "net"
#define MMIO 0xd0001000UL
#define QN 8

#include "virtio.h"

#define HDR 12
#define BUF 2048
#define F_MAC (1u << 5)

static u8 rxbuf[QN][BUF];
static u8 txbuf[HDR + 64];

static void puthex8(u8 v) {
    const char *h = "0123456789abcdef";
    outb(0x3f8, (u8)h[v >> 4]);
    outb(0x3f8, (u8)h[v & 15]);
}

void guest_main(void) {
    if (virtio_start(1, F_MAC, 2)) return;
    u8 mac[6];
    for (int i = 0; i < 6; i++) mac[i] = *(volatile u8 *)(MMIO + 0x100 + i);
    for (u16 i = 0; i < QN; i++) {
        qs[0].d[i] = (struct desc){ (u64)rxbuf[i], BUF, 2, 0 };
        give(0, i);
    }
    /* vnet header (zero: no offloads used), then Ethernet + ARP request. */
    u8 *f = txbuf + HDR;
    memset(txbuf, 0, sizeof txbuf);
    for (int i = 0; i < 6; i++) { f[i] = 0xff; f[6 + i] = mac[i]; f[22 + i] = mac[i]; }
    f[12] = 0x08; f[13] = 0x06;                       /* ARP */
    f[14] = 0; f[15] = 1; f[16] = 0x08; f[17] = 0;    /* Ethernet, IPv4 */
    f[18] = 6; f[19] = 4; f[20] = 0; f[21] = 1;       /* request */
    f[28] = 10; f[29] = 99; f[30] = 0; f[31] = 2;     /* sender 10.99.0.2 */
    f[38] = 10; f[39] = 99; f[40] = 0; f[41] = 1;     /* target 10.99.0.1 */
    for (int tries = 0; tries < 25; tries++) {
        qs[1].d[0] = (struct desc){ (u64)txbuf, HDR + 42, 0, 0 };
        give(1, 0);
        if (take(1, 0) < 0) { fail("tx not completed"); return; }
        u32 len;
        int id;
        /* ~0.2 s for an answer (TSC ticks at a few GHz) before asking again. */
        while ((id = take_within(0, &len, 600000000UL)) >= 0) {
            u8 *r = rxbuf[id] + HDR;
            int is_reply = len >= HDR + 42 && r[12] == 0x08 && r[13] == 0x06 && r[21] == 2 && r[28] == 10 &&
                           r[29] == 99 && r[30] == 0 && r[31] == 1;
            if (is_reply) {
                puts("net: 10.99.0.1 is at ");
                for (int i = 0; i < 6; i++) { puthex8(r[22 + i]); if (i < 5) outb(0x3f8, ':'); }
                puts("\n");
                return;
            }
            give(0, (u16)id);
        }
    }
    fail("no ARP reply");
}
