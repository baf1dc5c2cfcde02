/* Tries to give FILE a file capability (CAP_SETUID, effective), as `setcap
 * cap_setuid+ep FILE` would: prints "setcap=0" when it went through, else
 * "setcap=-1 <why>". Built static so it runs in the busybox rootfs. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>

struct vfs_cap_data {
    uint32_t magic_etc;
    struct { uint32_t permitted, inheritable; } data[2];
};

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: setcap_probe FILE\n");
        return 2;
    }
    struct vfs_cap_data d;
    memset(&d, 0, sizeof d);
    d.magic_etc = 0x02000000 | 0x1; /* VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE */
    d.data[0].permitted = 1u << 7;  /* CAP_SETUID */
    int r = setxattr(argv[1], "security.capability", &d, sizeof d, 0);
    printf("setcap=%d %s\n", r, r ? strerror(errno) : "");
    return 0;
}
