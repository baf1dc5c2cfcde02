/* Run inside a container: tries to reach the agent's vsock port (1024) the ways a
 * hostile container would — loopback (CID 1), the guest's own CID, the host — and
 * prints one line per try. "REPLY" means the agent answered: isolation is broken. */
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void probe(const char *what, unsigned cid) {
    int s = socket(AF_VSOCK, SOCK_STREAM, 0);
    if (s < 0) {
        printf("%s socket-refused %s\n", what, strerror(errno));
        return;
    }
    struct timeval tv = {2, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    struct sockaddr_vm a;
    memset(&a, 0, sizeof a);
    a.svm_family = AF_VSOCK;
    a.svm_cid = cid;
    a.svm_port = 1024;
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
        printf("%s connect-refused %s\n", what, strerror(errno));
        close(s);
        return;
    }
    /* A ping frame: 4-byte big-endian length, then JSON. */
    const char *j = "{\"op\":\"ping\"}";
    unsigned n = strlen(j);
    unsigned char h[4] = {n >> 24, n >> 16, n >> 8, n};
    if (write(s, h, 4) != 4 || write(s, j, n) != (ssize_t)n) {
        printf("%s closed-on-write\n", what);
        close(s);
        return;
    }
    char buf[64];
    ssize_t r = read(s, buf, sizeof buf);
    if (r > 0)
        printf("%s REPLY %zd bytes\n", what, r);
    else
        printf("%s connected-no-reply\n", what);
    close(s);
}

int main(int argc, char **argv) {
    probe("loopback", 1);
    if (argc > 1)
        probe("own", (unsigned)strtoul(argv[1], 0, 10));
    probe("host", 2);
    return 0;
}
